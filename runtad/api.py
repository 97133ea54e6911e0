"""The REST API under /v1 on the unix socket (aiohttp).

Domain errors become an HTTP status and a stable code in one middleware; unexpected
faults are logged with their traceback and reach the client only as "internal".
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time
from typing import Any, Awaitable, Callable

import structlog
from aiohttp import web

from . import __version__, metrics, openapi
from .errors import InvalidRequestError, RuntadError
from .hosts import InvalidHostError, InvalidHostsError, PublicSuffixWildcardError
from .manager import FailedSandbox, Manager, PolicyChange
from .reload import Reloader
from .sandbox import Sandbox

log = structlog.get_logger()

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MANAGER_KEY = web.AppKey("manager", Manager)
ACCESS_KEY = web.AppKey("access", object)
STARTED_KEY = web.AppKey("started", float)
RELOADER_KEY = web.AppKey("reloader", Reloader)
# The kernel feature checks made at start (kernelcheck.py), shown by GET /v1/status.
KERNEL_CHECKS_KEY = web.AppKey("kernel_checks", list)
# Request key naming the body field whose entries a host error indexes ("hosts" by default).
HOSTS_FIELD = "hosts_field"


def error_body(code: str, message: str, field: str | None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "field": field}}


def error_response(status: int, code: str, message: str, field: str | None = None) -> web.Response:
    return web.json_response(error_body(code, message, field), status=status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.status == 404:
            return error_response(404, "not_found", f"no route for {request.method} {request.path}: see /v1/openapi.json")
        if isinstance(error, web.HTTPMethodNotAllowed):
            allowed = ", ".join(sorted(error.allowed_methods))
            message = f"{request.method} is not allowed on {request.path}: use {allowed}"
            response = error_response(405, "method_not_allowed", message)
            # HTTP requires the Allow field on 405 (RFC 9110, section 15.5.6).
            response.headers["Allow"] = error.headers["Allow"]
            return response
        raise
    except InvalidHostsError as error:
        index, first = error.errors[0]
        code = "public_suffix_wildcard" if isinstance(first, PublicSuffixWildcardError) else "invalid_host"
        field = request.get(HOSTS_FIELD, "hosts")
        return error_response(400, code, str(first), f"{field}[{index}]")
    except PublicSuffixWildcardError as error:
        field = request.get(HOSTS_FIELD, "hosts")
        return error_response(400, "public_suffix_wildcard", str(error), field)
    except InvalidHostError as error:
        return error_response(400, "invalid_host", str(error), request.get(HOSTS_FIELD, "hosts"))
    except RuntadError as error:
        level = log.info if error.status < 500 else log.error
        level("request_failed", path=request.path, code=error.code, error=error.message)
        return error_response(error.status, error.code, error.message, error.field)
    except Exception:
        log.exception("request_crashed", method=request.method, path=request.path)
        return error_response(500, "internal", "internal error in runtad: the daemon log has the details")


class Access:
    """Admit root and members of one group, by the caller's SO_PEERCRED credentials.

    A caller whose network namespace is a sandbox's is rejected whatever its uid, because a
    process inside a sandbox must not change that sandbox's enforcement.
    """

    def __init__(self, gid: int | None, sandbox_of_netns: Callable[[int], str | None] | None = None) -> None:
        self.gid = gid
        self.sandbox_of_netns = sandbox_of_netns or (lambda inode: None)

    def sandbox_of_caller(self, pid: int) -> str | None:
        """Return the sandbox whose network namespace the process pid is in, if any."""
        try:
            inode = os.stat(f"/proc/{pid}/ns/net").st_ino
        except OSError:
            return None
        return self.sandbox_of_netns(inode)

    def caller(self, request: web.Request) -> tuple[int, int, int] | None:
        sock = request.transport.get_extra_info("socket") if request.transport else None
        if sock is None or sock.family != socket.AF_UNIX:
            return None
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, gid = struct.unpack("3i", raw)
        return pid, uid, gid

    def is_admitted(self, pid: int, uid: int, gid: int) -> bool:
        if uid == 0:
            return True
        if self.gid is None:
            return False
        return gid == self.gid or self.gid in _supplementary_groups(pid)


def _supplementary_groups(pid: int) -> set[int]:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("Groups:"):
                return {int(item) for item in line.split()[1:]}
    except OSError:
        pass
    return set()


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    access: Access = request.app[ACCESS_KEY]  # type: ignore[assignment]
    caller = access.caller(request)
    if caller is not None:
        pid, uid, gid = caller
        if not access.is_admitted(pid, uid, gid):
            return error_response(
                403, "forbidden",
                f"uid {uid} may not use runtad: run as root or join the API socket's group",
            )
        sandbox = access.sandbox_of_caller(pid)
        if sandbox is not None:
            return error_response(
                403, "forbidden",
                f"process {pid} runs inside sandbox {sandbox!r}, and processes in a sandbox may"
                " not use runtad: call the API from the host",
            )
        request["caller_uid"] = uid
    return await handler(request)


async def read_json(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidRequestError("request body is not valid JSON") from None
    except RecursionError:
        message = "request body nests arrays or objects too deeply: flatten it"
        raise InvalidRequestError(message) from None
    if not isinstance(body, dict):
        raise InvalidRequestError("request body must be a JSON object")
    return body


def if_match(request: web.Request) -> int | None:
    value = request.headers.get("If-Match")
    if value is None:
        return None
    text = value.strip().strip('"')
    # isdigit() alone admits digits that int() rejects ("²") or reads (Arabic-Indic ones).
    if not (text.isascii() and text.isdigit()) or len(text) > openapi.MAX_VERSION_DIGITS:
        raise InvalidRequestError(f"If-Match {value!r} is not a policy version: send the integer version", field="If-Match")
    return int(text)


def runtime_json(sandbox: Sandbox) -> dict[str, Any]:
    record = sandbox.record
    body: dict[str, Any] = {
        "name": record.name,
        "netns": record.netns,
        "adopted": record.adopted,
        "created_at": record.created_at,
        "host_interface": record.host_interface,
        "addresses": [],
        "gateway": [],
        "egress": {"enabled": sandbox.policy.enabled, "version": sandbox.policy.version},
        "state": "running",
    }
    if record.slot is not None and not record.adopted:
        from .sandboxes import SandboxAddresses

        config = sandbox.config
        addresses = SandboxAddresses.for_slot(record.slot, config.ipv4_pool, config.ipv6_pool)
        body["addresses"] = [str(addresses.sandbox4), str(addresses.sandbox6)]
        body["gateway"] = [str(addresses.host4.ip), str(addresses.host6.ip)]
    return body


def failed_runtime_json(failed: FailedSandbox) -> dict[str, Any]:
    record = failed.record
    return {
        "name": record.name,
        "netns": record.netns,
        "adopted": record.adopted,
        "created_at": record.created_at,
        "host_interface": record.host_interface,
        "addresses": [],
        "gateway": [],
        "egress": None,
        "state": "failed",
        "error": failed.error,
    }


def egress_json(sandbox: Sandbox) -> dict[str, Any]:
    return {
        "enabled": sandbox.policy.enabled,
        "allowed_hosts": list(sandbox.policy.hosts),
        "version": sandbox.policy.version,
        "inspect": sandbox.policy.inspect,
        "entries": sandbox.entries(),
    }


def _bool_field(body: dict[str, Any], key: str, required: bool) -> bool | None:
    if key not in body:
        if required:
            raise InvalidRequestError(f"missing field {key!r}: send true or false", field=key)
        return None
    value = body[key]
    if not isinstance(value, bool):
        raise InvalidRequestError(f"field {key!r} must be true or false, not {value!r}", field=key)
    return value


def _hosts_field(body: dict[str, Any], key: str, required: bool) -> list[str] | None:
    if key not in body:
        if required:
            raise InvalidRequestError(f"missing field {key!r}: send a list of host names", field=key)
        return None
    value = body[key]
    if not isinstance(value, list):
        raise InvalidRequestError(f"field {key!r} must be a list of host names", field=key)
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise InvalidRequestError(f"{key}[{index}] must be a string, not {item!r}", field=f"{key}[{index}]")
    return value


INSPECT_MODES = ("first", "all")


def _inspect_field(body: dict[str, Any]) -> str | None:
    if "inspect" not in body:
        return None
    value = body["inspect"]
    if value not in INSPECT_MODES:
        raise InvalidRequestError(
            f"field 'inspect' must be \"first\" or \"all\", not {value!r}", field="inspect"
        )
    return str(value)


def _reject_unknown(body: dict[str, Any], known: set[str]) -> None:
    for key in body:
        if key not in known:
            raise InvalidRequestError(f"unknown field {key!r}: expected " + ", ".join(sorted(known)), field=key)


def _is_path_text(value: object) -> bool:
    """Tell whether value can name a file: a non-empty string without NUL or lone surrogates."""
    if not isinstance(value, str) or not value or "\0" in value:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


class Routes:
    def __init__(self, manager: Manager) -> None:
        self.manager = manager

    async def status(self, request: web.Request) -> web.Response:
        reloader = request.app.get(RELOADER_KEY)
        last_reload = reloader.last if reloader is not None else None
        return web.json_response({
            "version": __version__,
            "uptime_seconds": round(time.monotonic() - request.app[STARTED_KEY], 3),
            "runtimes": len(self.manager.sandboxes),
            "enforcing": sum(1 for sandbox in self.manager.sandboxes.values() if sandbox.policy.enabled),
            "upstream_dns": [f"{host}:{port}" for host, port in self.manager.upstream.servers],
            "last_reconcile": self.manager.last_reconcile,
            "last_config_reload": last_reload.to_json() if last_reload is not None else None,
            "dropped_events": metrics.dropped_events(),
            "kernel_checks": [check.to_json() for check in request.app.get(KERNEL_CHECKS_KEY, [])],
        })

    async def list_runtimes(self, request: web.Request) -> web.Response:
        items = [runtime_json(sandbox) for sandbox in self.manager.sandboxes.values()]
        items.extend(failed_runtime_json(failed) for failed in self.manager.failed.values())
        items.sort(key=lambda item: item["name"])
        return web.json_response({"items": items})

    async def create_runtime(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        _reject_unknown(body, {"name", "netns"})
        name = body.get("name")
        if not isinstance(name, str):
            raise InvalidRequestError("missing field 'name': send the sandbox name as a string", field="name")
        netns = body.get("netns")
        if netns is not None and not _is_path_text(netns):
            raise InvalidRequestError("field 'netns' must be a namespace name or path", field="netns")
        sandbox = await self.manager.create(name, netns)
        log.info("api_write", action="create_runtime", runtime=name, caller_uid=request.get("caller_uid"))
        return web.json_response(runtime_json(sandbox), status=201)

    async def get_runtime(self, request: web.Request) -> web.Response:
        return web.json_response(runtime_json(self.manager.get(request.match_info["name"])))

    async def delete_runtime(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        await self.manager.delete(name)
        log.info("api_write", action="delete_runtime", runtime=name, caller_uid=request.get("caller_uid"))
        return web.Response(status=204)

    async def get_egress(self, request: web.Request) -> web.Response:
        return web.json_response(egress_json(self.manager.get(request.match_info["name"])))

    async def put_egress(self, request: web.Request) -> web.Response:
        request[HOSTS_FIELD] = "allowed_hosts"
        body = await read_json(request)
        _reject_unknown(body, {"enabled", "allowed_hosts", "force", "inspect"})
        change = PolicyChange(
            enabled=_bool_field(body, "enabled", True),
            inspect=_inspect_field(body),
            replace_hosts=_hosts_field(body, "allowed_hosts", True),
            force=bool(_bool_field(body, "force", False)),
        )
        return await self._write(request, change)

    async def patch_egress(self, request: web.Request) -> web.Response:
        request[HOSTS_FIELD] = "allowed_hosts"
        body = await read_json(request)
        _reject_unknown(body, {"enabled", "allowed_hosts", "force", "inspect"})
        change = PolicyChange(
            enabled=_bool_field(body, "enabled", False),
            inspect=_inspect_field(body),
            replace_hosts=_hosts_field(body, "allowed_hosts", False),
            force=bool(_bool_field(body, "force", False)),
        )
        return await self._write(request, change)

    async def allow(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        _reject_unknown(body, {"hosts", "force"})
        hosts = _hosts_field(body, "hosts", True)
        change = PolicyChange(add_hosts=hosts, force=bool(_bool_field(body, "force", False)))
        return await self._write(request, change)

    async def remove(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        _reject_unknown(body, {"hosts"})
        return await self._write(request, PolicyChange(remove_hosts=_hosts_field(body, "hosts", True)))

    async def enable(self, request: web.Request) -> web.Response:
        return await self._write(request, PolicyChange(enabled=True))

    async def disable(self, request: web.Request) -> web.Response:
        return await self._write(request, PolicyChange(enabled=False))

    async def _write(self, request: web.Request, change: PolicyChange) -> web.Response:
        name = request.match_info["name"]
        sandbox = await self.manager.write_policy(name, change, if_match(request), request.get("caller_uid"))
        return web.json_response(egress_json(sandbox))


async def serve_openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi.build_document())


async def serve_metrics(request: web.Request) -> web.Response:
    body, content_type = metrics.render(request.headers.get("Accept"))
    return web.Response(body=body, headers={"Content-Type": content_type})


def build_metrics_app() -> web.Application:
    """Build the TCP metrics listener's app, which serves GET /metrics and nothing else."""
    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/metrics", serve_metrics)
    return app


def build_app(
    manager: Manager, access: Access, *, started: float | None = None, reloader: Reloader | None = None,
) -> web.Application:
    app = web.Application(middlewares=[error_middleware, access_middleware], client_max_size=4 * 1024 * 1024)
    app[MANAGER_KEY] = manager
    app[ACCESS_KEY] = access
    app[STARTED_KEY] = time.monotonic() if started is None else started
    if reloader is not None:
        app[RELOADER_KEY] = reloader
    routes = Routes(manager)
    app.router.add_get("/metrics", serve_metrics)
    app.router.add_get("/v1/status", routes.status)
    app.router.add_get("/v1/openapi.json", serve_openapi)
    app.router.add_get("/v1/runtimes", routes.list_runtimes)
    app.router.add_post("/v1/runtimes", routes.create_runtime)
    app.router.add_get("/v1/runtimes/{name}", routes.get_runtime)
    app.router.add_delete("/v1/runtimes/{name}", routes.delete_runtime)
    app.router.add_get("/v1/runtimes/{name}/egress", routes.get_egress)
    app.router.add_put("/v1/runtimes/{name}/egress", routes.put_egress)
    app.router.add_patch("/v1/runtimes/{name}/egress", routes.patch_egress)
    app.router.add_post("/v1/runtimes/{name}/egress/allow", routes.allow)
    app.router.add_post("/v1/runtimes/{name}/egress/remove", routes.remove)
    app.router.add_post("/v1/runtimes/{name}/egress/enable", routes.enable)
    app.router.add_post("/v1/runtimes/{name}/egress/disable", routes.disable)
    return app


def socket_group_id(group: str) -> int | None:
    """Return the gid of group, creating it as a system group when it is missing."""
    import grp
    import subprocess

    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        pass
    try:
        subprocess.run(["groupadd", "--system", group], check=True, capture_output=True, timeout=10)
        log.info("socket_group_created", group=group)
        return grp.getgrnam(group).gr_gid
    except (OSError, subprocess.SubprocessError, KeyError) as error:
        log.warning("socket_group_unavailable", group=group, error=str(error), fallback="root only")
        return None


def prepare_socket_path(path: str) -> None:
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, mode=0o755, exist_ok=True)
    if os.path.exists(path):
        os.unlink(path)
