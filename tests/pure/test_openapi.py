"""The OpenAPI document against the aiohttp router, the error classes and the docs."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import jsonschema_rs
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from schemathesis.specs.openapi.definitions import OPENAPI_31

import runtad.audit.service
import runtad.gateway.listener
import runtad.sandboxes
from runtad import api, errors, manager, openapi
from runtad.api_audits import add_audit_routes
from runtad.audit import AuditService
from runtad.audit.queries import MAX_LIMIT
from runtad.config import ConfigError

DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def build_stub_app() -> web.Application:
    """Build the daemon's app as main.serve does, with stand-ins that no route here calls."""
    app = api.build_app(cast(manager.Manager, object()), api.Access(None))
    add_audit_routes(app, cast(AuditService, object()))
    return app


def router_operations(app: web.Application) -> set[tuple[str, str]]:
    routes = set()
    for route in app.router.routes():
        assert route.resource is not None
        routes.add((route.method.lower(), route.resource.canonical))
    return routes


def documented_operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method, path)
        for path, item in document["paths"].items()
        for method in item
        if method in METHODS
    }


def walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


def resolve(document: dict[str, Any], reference: str) -> Any:
    assert reference.startswith("#/"), reference
    target: Any = document
    for part in reference[2:].split("/"):
        target = target[part]
    return target


def api_error_classes() -> list[type[errors.RuntadError]]:
    """Return every RuntadError subclass that a request can raise into the error middleware."""
    found: list[type[errors.RuntadError]] = []
    pending = list(errors.RuntadError.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        # Settings errors end the daemon at start or fail a reload; no route raises them.
        if cls is not ConfigError:
            found.append(cls)
    return found


def test_router_routes_all_documented() -> None:
    document = openapi.build_document()
    served = {item for item in router_operations(build_stub_app()) if item[0] != "head"}
    assert served - documented_operations(document) == set()


def test_documented_routes_all_served() -> None:
    document = openapi.build_document()
    served = router_operations(build_stub_app())
    assert documented_operations(document) - served == set()


def test_head_routes_only_beside_get() -> None:
    served = router_operations(build_stub_app())
    heads = {path for method, path in served if method == "head"}
    gets = {path for method, path in served if method == "get"}
    assert heads == gets


def test_document_is_openapi_31() -> None:
    document = openapi.build_document()
    assert document["openapi"] == "3.1.0"
    jsonschema_rs.validator_for(OPENAPI_31).validate(document)


def test_component_schemas_are_valid() -> None:
    for name, schema in openapi.build_document()["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(schema), name


def test_references_resolve() -> None:
    document = openapi.build_document()
    references = [
        node["$ref"] for node in walk(document) if isinstance(node, dict) and "$ref" in node
    ]
    assert references
    for reference in references:
        assert resolve(document, reference) is not None, reference


def test_path_parameters_declared() -> None:
    document = openapi.build_document()
    for path, item in document["paths"].items():
        names = set(re.findall(r"\{([^}]+)\}", path))
        declared = {
            resolve(document, parameter["$ref"])["name"] for parameter in item.get("parameters", [])
        }
        assert names == declared, path


def test_every_operation_documents_errors() -> None:
    document = openapi.build_document()
    for path, item in document["paths"].items():
        for method in METHODS & set(item):
            responses = item[method]["responses"]
            assert {"403", "500"} <= set(responses), (method, path)


def test_writes_take_if_match() -> None:
    document = openapi.build_document()
    for path, item in document["paths"].items():
        for method in {"put", "patch", "post"} & set(item):
            if path.startswith("/v1/runtimes/{name}/egress"):
                parameters = [entry["$ref"] for entry in item[method].get("parameters", [])]
                assert "#/components/parameters/IfMatch" in parameters, (method, path)


def test_request_bodies_closed() -> None:
    schemas = openapi.build_document()["components"]["schemas"]
    for name in ("CreateRuntime", "PutEgress", "PatchEgress", "AllowHosts", "RemoveHosts"):
        assert schemas[name]["additionalProperties"] is False, name


def test_request_body_validation() -> None:
    document = openapi.build_document()

    def is_valid(name: str, body: Any) -> bool:
        schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
        return bool(jsonschema_rs.Draft202012Validator(schema).is_valid(body))

    assert is_valid("PutEgress", {"enabled": True, "allowed_hosts": ["pypi.org"], "inspect": "all"})
    assert not is_valid("PutEgress", {"allowed_hosts": []})
    assert not is_valid("AllowHosts", {"hosts": ["pypi.org"], "ports": [443]})
    assert not is_valid("CreateRuntime", {"name": "Bad/Name"})
    assert not is_valid("CreateRuntime", {"name": "worker", "netns": "a\0b"})


def test_inspect_enum_matches_api() -> None:
    schema = openapi.build_document()["components"]["schemas"]["PutEgress"]
    assert schema["properties"]["inspect"]["enum"] == list(api.INSPECT_MODES)


def test_name_pattern_matches_manager() -> None:
    schema = openapi.build_document()["components"]["schemas"]["CreateRuntime"]
    assert schema["properties"]["name"]["pattern"] == f"^{manager.NAME_PATTERN.pattern}$"


def test_limit_bounds_match_queries() -> None:
    limit = openapi.build_document()["components"]["parameters"]["limit"]["schema"]
    assert limit["maximum"] == MAX_LIMIT
    assert limit["minimum"] == 1


def test_error_codes_cover_error_classes() -> None:
    for cls in api_error_classes():
        assert cls.code in openapi.ERROR_CODES[cls.status], cls


def test_error_enum_lists_every_code() -> None:
    schema = openapi.build_document()["components"]["schemas"]["Error"]
    enum = schema["properties"]["error"]["properties"]["code"]["enum"]
    assert sorted(enum) == sorted(code for codes in openapi.ERROR_CODES.values() for code in codes)


def test_docs_error_codes_documented() -> None:
    rows = re.findall(r"^\| (\d{3}) \| `([a-z_]+)` \|", DOCS.read_text(), re.MULTILINE)
    assert rows
    for status, code in rows:
        assert code in openapi.ERROR_CODES[int(status)], code


def test_imported_error_modules_used() -> None:
    # The error classes above are found by subclass walk, so their modules must be imported.
    assert runtad.sandboxes.PoolExhaustedError in api_error_classes()
    assert runtad.audit.service.AuditUnavailableError in api_error_classes()
    assert runtad.gateway.listener.GatewayListenError in api_error_classes()


def test_build_document_returns_copy() -> None:
    first = openapi.build_document()
    first["paths"].clear()
    assert openapi.build_document()["paths"]


async def fetch_served_document() -> tuple[int, Any]:
    async with TestClient(TestServer(build_stub_app())) as client:
        response = await client.get("/v1/openapi.json")
        return response.status, await response.json()


def test_openapi_route_serves_document() -> None:
    status, body = asyncio.run(fetch_served_document())
    assert status == 200
    assert body == openapi.build_document()
