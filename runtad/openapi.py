"""The OpenAPI 3.1 document of the REST API, served at GET /v1/openapi.json.

Limits and enumerations come from the constants the handlers validate with, so the
document follows the code. tests/pure/test_openapi.py checks that it describes every
route of build_app and add_audit_routes and no other.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from . import __version__
from .audit.model import CATEGORIES, Action, Reason, Source
from .audit.queries import DEFAULT_LIMIT, MAX_CURSOR_DIGITS, MAX_LIMIT, MAX_RUNTIME_LENGTH, ORDERS
from .gateway.decision import INSPECT_ALL, INSPECT_FIRST
from .manager import NAME_PATTERN

Schema = dict[str, Any]

OPENAPI_VERSION = "3.1.0"
JSON = "application/json"

# Every error code the API sends, by HTTP status.
ERROR_CODES: dict[int, tuple[str, ...]] = {
    400: ("invalid_request", "invalid_host", "public_suffix_wildcard", "invalid_name"),
    403: ("forbidden",),
    404: ("not_found",),
    405: ("method_not_allowed",),
    409: ("already_exists", "version_conflict"),
    422: ("netns_not_found",),
    500: ("internal",),
    503: (
        "kernel_apply_failed",
        "sandbox_unavailable",
        "pool_exhausted",
        "store_unavailable",
        "audit_unavailable",
        "gateway_unavailable",
    ),
}

# Policy versions are SQLite integers, so an If-Match of more digits matches none.
MAX_VERSION_DIGITS = 19

DESCRIPTION = (
    "runtad serves this API over HTTP/1.1 on a unix socket (default /run/runta/runtad.sock);"
    " the host name in request URLs is ignored. The socket has mode 0660 and belongs to the"
    " group named by socket_group (default runta). runtad admits root and members of that group"
    " by the peer credentials of the connection and returns 403 forbidden to anyone else."
    " Every error has the Error body. Every GET route also serves HEAD, without a body."
)


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def closed_object(properties: dict[str, Schema], required: list[str] | None = None) -> Schema:
    """Return an object schema that rejects fields other than ``properties``."""
    schema: Schema = {"type": "object", "properties": properties, "additionalProperties": False}
    schema["required"] = list(properties) if required is None else required
    return schema


STRINGS: Schema = {"type": "array", "items": {"type": "string"}}
TIMESTAMP: Schema = {
    "type": "string",
    "format": "date-time",
    "examples": ["2026-12-04T20:10:00.000Z"],
}
VERSION: Schema = {
    "type": "integer",
    "minimum": 1,
    "description": "Policy version, raised by each write that changes the policy.",
}
HOSTS: Schema = {
    "type": "array",
    "items": {"type": "string"},
    "description": (
        "Host names (pypi.org) or wildcards (*.pythonhosted.org), without scheme, port or path."
    ),
}
FORCE: Schema = {
    "type": "boolean",
    "default": False,
    "description": "Allow a wildcard directly on a public suffix (*.com).",
}
INSPECT: Schema = {
    "type": "string",
    "enum": [INSPECT_FIRST, INSPECT_ALL],
    "description": (
        "Which TCP 80/443 connections pass the egress gateway: first (those to addresses outside"
        " the sets) or all."
    ),
}


def error_schema() -> Schema:
    codes = [code for group in ERROR_CODES.values() for code in group]
    detail = closed_object(
        {
            "code": {"type": "string", "enum": codes},
            "message": {
                "type": "string",
                "description": "What failed, on which value, and what to do.",
            },
            "field": {
                "type": ["string", "null"],
                "description": (
                    "The request field, query parameter or header at fault, such as hosts[1]; null"
                    " when the error is not about one field."
                ),
            },
        }
    )
    return closed_object({"error": detail})


def runtime_schema() -> Schema:
    schema = closed_object(
        {
            "name": {"type": "string", "pattern": f"^{NAME_PATTERN.pattern}$"},
            "netns": {"type": "string", "description": "Path of the network namespace file."},
            "adopted": {
                "type": "boolean",
                "description": "True when runtad adopted an existing namespace.",
            },
            "created_at": TIMESTAMP,
            "host_interface": {
                "type": ["string", "null"],
                "description": "Host end of the veth pair; null when adopted.",
            },
            "addresses": {
                **STRINGS,
                "description": "The sandbox's addresses with prefix length; empty when adopted.",
            },
            "gateway": {
                **STRINGS,
                "description": (
                    "The host-side addresses the sandbox routes through; empty when adopted."
                ),
            },
            "egress": nullable(ref("EgressState")),
            "state": {"type": "string", "enum": ["running", "failed"]},
            "error": {"type": "string", "description": "Why a failed runtime did not start."},
        },
        [
            "name",
            "netns",
            "adopted",
            "created_at",
            "host_interface",
            "addresses",
            "gateway",
            "egress",
            "state",
        ],
    )
    schema["if"] = {"properties": {"state": {"const": "failed"}}}
    schema["then"] = {"required": ["error"], "properties": {"egress": {"type": "null"}}}
    schema["else"] = {"not": {"required": ["error"]}, "properties": {"egress": ref("EgressState")}}
    return schema


def egress_schemas() -> dict[str, Schema]:
    address = closed_object(
        {
            "address": {"type": "string"},
            "expires_at": TIMESTAMP,
            "source": {
                "type": "string",
                "enum": ["resolver", "dns", "sni"],
                "description": (
                    "resolver: runtad's own lookup; dns: an answer the DNS proxy gave the sandbox;"
                    " sni: a gateway hit."
                ),
            },
        }
    )
    entry = closed_object(
        {
            "host": {"type": "string"},
            "kind": {"type": "string", "enum": ["exact", "wildcard"]},
            "status": {"type": "string", "enum": ["resolved", "unresolved", "wildcard"]},
            "addresses": {"type": "array", "items": ref("EgressAddress")},
            "error": {
                "type": "string",
                "description": "Why the last lookup of an unresolved host failed.",
            },
        },
        ["host", "kind", "status", "addresses"],
    )
    egress = closed_object(
        {
            "enabled": {"type": "boolean"},
            "allowed_hosts": {
                **STRINGS,
                "description": (
                    "The allowlist in canonical form: lower case, no trailing dot, punycode."
                ),
            },
            "version": VERSION,
            "inspect": INSPECT,
            "entries": {"type": "array", "items": ref("EgressEntry")},
        }
    )
    state = closed_object({"enabled": {"type": "boolean"}, "version": VERSION})
    return {"EgressAddress": address, "EgressEntry": entry, "Egress": egress, "EgressState": state}


def event_fields() -> dict[str, Schema]:
    """Return the fields of a stored egress event (runtad.audit.model.EgressEvent.to_payload)."""
    return {
        "time": TIMESTAMP,
        "runtime": {"type": "string"},
        "action": {"type": "string", "enum": [str(action) for action in Action]},
        "host": {"type": ["string", "null"]},
        "address": {"type": ["string", "null"]},
        "port": {"type": ["integer", "null"]},
        "protocol": {"type": ["string", "null"]},
        "path": {"type": ["string", "null"]},
        "reason": {"type": "string", "enum": [str(reason) for reason in Reason]},
        "message": {"type": "string"},
        "source": {"type": "string", "enum": [str(source) for source in Source]},
        "count": {
            "type": "integer",
            "minimum": 1,
            "description": "Number of identical decisions folded into this event.",
        },
    }


def audit_schemas() -> dict[str, Schema]:
    cursor = {
        "type": "integer",
        "minimum": 1,
        "description": "Audit id; pass it as after= to page on.",
    }
    next_cursor = {
        "type": ["string", "null"],
        "description": "Cursor for the next page (after=); null on the last newest-first page.",
    }
    payload = closed_object(event_fields())
    event = closed_object({"id": cursor, **event_fields()})
    audit = closed_object(
        {
            "id": cursor,
            "time": TIMESTAMP,
            "runtime": {"type": "string"},
            "category": {"type": "string", "enum": list(CATEGORIES)},
            "payload": ref("EgressEventPayload"),
        }
    )
    return {
        "EgressEventPayload": payload,
        "EgressEvent": event,
        "Audit": audit,
        "AuditPage": closed_object(
            {"items": {"type": "array", "items": ref("Audit")}, "next": next_cursor}
        ),
        "EventPage": closed_object(
            {"items": {"type": "array", "items": ref("EgressEvent")}, "next": next_cursor}
        ),
    }


def status_schemas() -> dict[str, Schema]:
    reload = closed_object(
        {
            "at": TIMESTAMP,
            "result": {"type": "string", "enum": ["applied", "rejected"]},
            "error": {"type": ["string", "null"]},
            "applied": STRINGS,
            "needs_restart": STRINGS,
        }
    )
    counts = {"type": "integer", "minimum": 0}
    status = closed_object(
        {
            "version": {"type": "string"},
            "uptime_seconds": {"type": "number", "minimum": 0},
            "runtimes": {**counts, "description": "Runtimes that are running."},
            "enforcing": {**counts, "description": "Runtimes with enforcement on."},
            "upstream_dns": {**STRINGS, "description": "Upstream name servers as ADDRESS:PORT."},
            "last_reconcile": {"type": ["string", "null"], "format": "date-time"},
            "last_config_reload": nullable(ref("ConfigReload")),
            "dropped_events": closed_object(
                {"audit": counts, "kernel_log": counts, "dns_queries": counts}
            ),
            "kernel_checks": {
                "type": "array",
                "description": "The netfilter features checked at start; runtad starts only when all are ok.",
                "items": closed_object(
                    {"feature": {"type": "string"}, "ok": {"type": "boolean"}, "detail": {"type": "string"}}
                ),
            },
        }
    )
    return {"ConfigReload": reload, "Status": status}


def request_schemas() -> dict[str, Schema]:
    create = closed_object(
        {
            "name": {"type": "string", "pattern": f"^{NAME_PATTERN.pattern}$"},
            "netns": {
                "type": "string",
                "minLength": 1,
                "pattern": "^[^\\u0000]+$",
                "description": "Adopt this existing namespace: a name under /run/netns or a path.",
            },
        },
        ["name"],
    )
    policy = {
        "enabled": {"type": "boolean"},
        "allowed_hosts": HOSTS,
        "force": FORCE,
        "inspect": INSPECT,
    }
    return {
        "CreateRuntime": create,
        "PutEgress": closed_object(policy, ["enabled", "allowed_hosts"]),
        "PatchEgress": closed_object(policy, []),
        "AllowHosts": closed_object({"hosts": HOSTS, "force": FORCE}, ["hosts"]),
        "RemoveHosts": closed_object({"hosts": HOSTS}),
    }


def components() -> Schema:
    schemas: dict[str, Schema] = {
        "Error": error_schema(),
        "Runtime": runtime_schema(),
        "RuntimeList": closed_object({"items": {"type": "array", "items": ref("Runtime")}}),
        **egress_schemas(),
        **audit_schemas(),
        **status_schemas(),
        **request_schemas(),
    }
    responses = {
        str(status): {
            "description": "Error: " + ", ".join(codes),
            "content": {JSON: {"schema": ref("Error")}},
        }
        for status, codes in ERROR_CODES.items()
    }
    parameters = {
        "name": {
            "name": "name",
            "in": "path",
            "required": True,
            "description": "Runtime (sandbox) name.",
            "schema": {"type": "string"},
            "examples": {"worker": {"value": "worker"}},
        },
        "IfMatch": {
            "name": "If-Match",
            "in": "header",
            "required": False,
            "description": (
                "Write only if the policy is at this version, else 409 version_conflict. Quotes as"
                " in an ETag are accepted."
            ),
            "schema": {"type": "string", "pattern": f'^"?[0-9]{{1,{MAX_VERSION_DIGITS}}}"?$'},
        },
        **page_parameters(),
    }
    return {"schemas": schemas, "responses": responses, "parameters": parameters}


def page_parameters() -> dict[str, Schema]:
    """Return the query parameters of the paged audit routes (runtad.audit.queries)."""
    return {
        "runtime": {
            "name": "runtime",
            "in": "query",
            "description": "Only audits of this runtime.",
            "schema": {"type": "string", "minLength": 1, "maxLength": MAX_RUNTIME_LENGTH},
        },
        "category": {
            "name": "category",
            "in": "query",
            "description": "Only audits of this category.",
            "schema": {"type": "string", "enum": list(CATEGORIES)},
        },
        "limit": {
            "name": "limit",
            "in": "query",
            "description": "Items per page.",
            "schema": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_LIMIT,
                "default": DEFAULT_LIMIT,
            },
        },
        "after": {
            "name": "after",
            "in": "query",
            "description": (
                "Cursor: the next value of an earlier page. With order=asc, the events stored"
                " after it."
            ),
            "schema": {"type": "string", "pattern": f"^[0-9]{{1,{MAX_CURSOR_DIGITS}}}$"},
        },
        "order": {
            "name": "order",
            "in": "query",
            "description": "desc: newest first; asc: oldest first.",
            "schema": {"type": "string", "enum": list(ORDERS), "default": ORDERS[0]},
        },
    }


def operation(
    operation_id: str,
    summary: str,
    success: dict[str, Any],
    errors: tuple[int, ...],
    *,
    parameters: tuple[str, ...] = (),
    body: str | None = None,
) -> Schema:
    """Return one operation. Every operation may also return 403 and 500."""
    responses: dict[str, Any] = dict(success)
    for status in sorted({*errors, 403, 500}):
        responses[str(status)] = {"$ref": f"#/components/responses/{status}"}
    result: Schema = {"operationId": operation_id, "summary": summary, "responses": responses}
    if parameters:
        result["parameters"] = [{"$ref": f"#/components/parameters/{name}"} for name in parameters]
    if body is not None:
        result["requestBody"] = {"required": True, "content": {JSON: {"schema": ref(body)}}}
    return result


def ok(schema: str, status: int = 200, description: str = "OK") -> dict[str, Any]:
    return {str(status): {"description": description, "content": {JSON: {"schema": ref(schema)}}}}


def egress_write(operation_id: str, summary: str, body: str | None) -> Schema:
    return operation(
        operation_id,
        summary,
        ok("Egress", description="The new policy, once the kernel holds it"),
        (400, 404, 409, 503),
        parameters=("IfMatch",),
        body=body,
    )


def paths() -> dict[str, Any]:
    metrics_content = {
        media: {"schema": {"type": "string"}}
        for media in ("text/plain", "application/openmetrics-text")
    }
    runtime_paths: dict[str, Any] = {
        "/v1/runtimes/{name}": {
            "get": operation("getRuntime", "Get a runtime", ok("Runtime"), (404, 503)),
            "delete": operation(
                "deleteRuntime",
                "Delete a runtime and what runtad made for it",
                {"204": {"description": "Deleted"}},
                (404, 503),
            ),
        },
        "/v1/runtimes/{name}/egress": {
            "get": operation(
                "getEgress",
                "Get the egress policy with resolved addresses",
                ok("Egress"),
                (404, 503),
            ),
            "put": egress_write("putEgress", "Replace the egress policy", "PutEgress"),
            "patch": egress_write(
                "patchEgress", "Change the given fields of the egress policy", "PatchEgress"
            ),
        },
        "/v1/runtimes/{name}/egress/allow": {
            "post": egress_write("allowHosts", "Add hosts to the allowlist", "AllowHosts")
        },
        "/v1/runtimes/{name}/egress/remove": {
            "post": egress_write("removeHosts", "Remove hosts from the allowlist", "RemoveHosts")
        },
        "/v1/runtimes/{name}/egress/enable": {
            "post": egress_write("enableEgress", "Turn enforcement on", None)
        },
        "/v1/runtimes/{name}/egress/disable": {
            "post": egress_write("disableEgress", "Turn enforcement off", None)
        },
        "/v1/runtimes/{name}/egress/events": {
            "get": operation(
                "listRuntimeEvents",
                "List a runtime's egress events",
                ok("EventPage"),
                (400, 404, 503),
                parameters=("limit", "after", "order"),
            ),
        },
    }
    for item in runtime_paths.values():
        item["parameters"] = [{"$ref": "#/components/parameters/name"}]
    return {
        "/metrics": {
            "get": operation(
                "getMetrics",
                "Prometheus metrics",
                {
                    "200": {
                        "description": "Text exposition, OpenMetrics when Accept requests it",
                        "content": metrics_content,
                    }
                },
                (),
            ),
        },
        "/v1/openapi.json": {
            "get": operation(
                "getOpenapi",
                "This document",
                {
                    "200": {
                        "description": "OpenAPI 3.1 document",
                        "content": {JSON: {"schema": {"type": "object"}}},
                    }
                },
                (),
            ),
        },
        "/v1/status": {"get": operation("getStatus", "Daemon status", ok("Status"), ())},
        "/v1/runtimes": {
            "get": operation("listRuntimes", "List runtimes", ok("RuntimeList"), ()),
            "post": operation(
                "createRuntime",
                "Create a runtime, or adopt an existing network namespace",
                ok("Runtime", 201, "Created"),
                (400, 409, 422, 503),
                body="CreateRuntime",
            ),
        },
        **runtime_paths,
        "/v1/audits": {
            "get": operation(
                "listAudits",
                "List audit records, newest first by default",
                ok("AuditPage"),
                (400, 503),
                parameters=("runtime", "category", "limit", "after", "order"),
            ),
        },
    }


@functools.cache
def _document() -> Schema:
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "runtad REST API", "version": __version__, "description": DESCRIPTION},
        "servers": [
            {"url": "http://runtad", "description": "the unix socket; the host name is ignored"}
        ],
        "paths": paths(),
        "components": components(),
    }


def build_document() -> Schema:
    """Return the OpenAPI document as a new dict the caller may change."""
    return copy.deepcopy(_document())
