"""In-memory stand-in for runtad's REST API on a unix socket, for SDK and CLI tests.

It follows docs/api.md closely enough to exercise the clients: runtimes CRUD, egress
reads and writes with If-Match and versions, error bodies, events and audits. Host
validation is deliberately crude (no scheme, path, port, query or user info) because
the real rules live in runtad.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,30}")
PUBLIC_SUFFIXES = {"com", "org", "net", "co.uk"}
NOT_HOST_CHARACTERS = set("/:@? \t")
# Namespaces that adoption accepts. Any other value gets netns_not_found.
EXISTING_NETNS = {"existing": "/run/netns/existing", "/proc/4242/ns/net": "/proc/4242/ns/net"}
FIXED_NOW = datetime(2026, 12, 4, 20, 10, tzinfo=UTC)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiFailure(Exception):
    """An error response in the docs/api.md body format."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def to_response(self) -> web.Response:
        body = {"error": {"code": self.code, "message": self.message, "field": self.field}}
        return web.json_response(body, status=self.status)


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").removesuffix("+00:00") + "Z"


@dataclass
class RecordedRequest:
    method: str
    path: str
    raw_path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class FakeRuntime:
    name: str
    netns: str
    adopted: bool
    index: int
    enabled: bool = False
    allowed_hosts: list[str] = field(default_factory=list)
    version: int = 1
    events: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "netns": self.netns,
            "adopted": self.adopted,
            "created_at": format_time(FIXED_NOW),
            "host_interface": None if self.adopted else f"rt-{self.name}"[:15],
            "addresses": [] if self.adopted else [f"10.213.0.{4 * self.index + 2}/30"],
            "gateway": [] if self.adopted else [f"10.213.0.{4 * self.index + 1}"],
            "egress": {"enabled": self.enabled, "version": self.version},
            "state": "running",
        }

    def egress_json(self) -> dict[str, Any]:
        entries = []
        for position, host in enumerate(self.allowed_hosts):
            entries.append(entry_json(host, position))
        return {
            "enabled": self.enabled,
            "allowed_hosts": list(self.allowed_hosts),
            "version": self.version,
            "inspect": "first",
            "entries": entries,
        }


def entry_json(host: str, position: int) -> dict[str, Any]:
    """Build a table entry: wildcards and *.invalid hosts have no addresses."""
    if host.startswith("*."):
        return {"host": host, "kind": "wildcard", "status": "wildcard", "addresses": []}
    if host.endswith(".invalid"):
        return {"host": host, "kind": "exact", "status": "unresolved", "addresses": []}
    expires = FIXED_NOW + timedelta(minutes=5)
    addresses = [
        {
            "address": f"192.0.2.{10 + position}",
            "expires_at": format_time(expires),
            "source": "resolver",
        },
        {
            "address": f"2001:db8::{10 + position:x}",
            "expires_at": format_time(expires),
            "source": "dns",
        },
    ]
    return {"host": host, "kind": "exact", "status": "resolved", "addresses": addresses}


def canonical_host(value: Any, field_name: str, force: bool) -> str:
    if not isinstance(value, str):
        raise ApiFailure(400, "invalid_request", f"{field_name} must be a string", field_name)
    if not value or NOT_HOST_CHARACTERS & set(value):
        raise ApiFailure(
            400,
            "invalid_host",
            f"invalid host {value!r}: allowlist entries are host names without scheme, "
            "path, port, query or user info; use pypi.org instead",
            field_name,
        )
    host = value.lower().removesuffix(".")
    if host.startswith("*.") and host[2:] in PUBLIC_SUFFIXES and not force:
        raise ApiFailure(
            400,
            "public_suffix_wildcard",
            f"wildcard {host!r} covers the public suffix {host[2:]!r}: "
            "send force to allow it anyway",
            field_name,
        )
    return host


def canonical_hosts(values: Any, field_name: str, force: bool) -> list[str]:
    if not isinstance(values, list):
        raise ApiFailure(400, "invalid_request", f"{field_name} must be a list", field_name)
    return [canonical_host(v, f"{field_name}[{i}]", force) for i, v in enumerate(values)]


class FakeRuntad:
    """State and aiohttp handlers of the fake. Tests read ``requests`` and call the helpers."""

    def __init__(self) -> None:
        self.runtimes: dict[str, FakeRuntime] = {}
        self.audits: list[dict[str, Any]] = []
        self.requests: list[RecordedRequest] = []
        self.next_failure: ApiFailure | None = None
        self._created = 0
        self._event_seq = 0

    # Test helpers.

    def fail_next(self, status: int, code: str, message: str, field: str | None = None) -> None:
        self.next_failure = ApiFailure(status, code, message, field)

    def add_runtime(self, name: str, **policy: Any) -> FakeRuntime:
        self._created += 1
        runtime = FakeRuntime(name, f"/run/netns/runta-{name}", False, self._created, **policy)
        self.runtimes[name] = runtime
        return runtime

    def add_event(self, runtime: str, **fields: Any) -> dict[str, Any]:
        self._event_seq += 1
        event = {
            "action": "deny",
            "host": None,
            "path": None,
            "reason": None,
            "address": None,
            "port": None,
            "protocol": None,
            "time": format_time(FIXED_NOW + timedelta(seconds=self._event_seq)),
            "count": 1,
        }
        event.update(fields)
        self.runtimes[runtime].events.append({"seq": self._event_seq, "event": event})
        self.audits.append(
            {
                "id": self._event_seq,
                "time": event["time"],
                "runtime": runtime,
                "category": "egress",
                "payload": event,
            }
        )
        return event

    # Plumbing.

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body: Any = None
        if request.can_read_body:
            text = await request.text()
            try:
                body = json.loads(text)
            except ValueError:
                body = text
        self.requests.append(
            RecordedRequest(
                request.method,
                request.path,
                request.raw_path,
                dict(request.query),
                dict(request.headers),
                body,
            )
        )
        failure, self.next_failure = self.next_failure, None
        if failure is not None:
            return failure.to_response()
        try:
            return await handler(request)
        except ApiFailure as exc:
            return exc.to_response()
        except web.HTTPNotFound:
            message = f"no route for {request.method} {request.path}"
            return ApiFailure(404, "not_found", message).to_response()

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self.middleware])
        base = "/v1/runtimes/{name}"
        app.router.add_get("/v1/status", self.get_status)
        app.router.add_get("/v1/runtimes", self.list_runtimes)
        app.router.add_post("/v1/runtimes", self.create_runtime)
        app.router.add_get(base, self.get_runtime)
        app.router.add_delete(base, self.delete_runtime)
        app.router.add_get(base + "/egress", self.get_egress)
        app.router.add_put(base + "/egress", self.put_egress)
        app.router.add_patch(base + "/egress", self.patch_egress)
        app.router.add_post(base + "/egress/allow", self.allow)
        app.router.add_post(base + "/egress/remove", self.remove)
        app.router.add_post(base + "/egress/enable", self.enable)
        app.router.add_post(base + "/egress/disable", self.disable)
        app.router.add_get(base + "/egress/events", self.list_events)
        app.router.add_get("/v1/audits", self.list_audits)
        return app

    def lookup(self, request: web.Request) -> FakeRuntime:
        name = request.match_info["name"]
        runtime = self.runtimes.get(name)
        if runtime is None:
            raise ApiFailure(
                404,
                "not_found",
                f"runtime {name!r} not found: list runtimes with `runta sandbox list`",
                "name",
            )
        return runtime

    def write_target(self, request: web.Request) -> FakeRuntime:
        """Return the runtime of a write after checking If-Match against its version."""
        runtime = self.lookup(request)
        if_match = request.headers.get("If-Match")
        if if_match is not None and if_match != str(runtime.version):
            raise ApiFailure(
                409,
                "version_conflict",
                f"If-Match {if_match} does not match the policy version {runtime.version} "
                f"of runtime {runtime.name!r}: fetch the policy and retry",
            )
        return runtime

    @staticmethod
    async def json_body(request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise ApiFailure(400, "invalid_request", "request body is not JSON") from None
        if not isinstance(body, dict):
            raise ApiFailure(400, "invalid_request", "request body must be a JSON object")
        return body

    @staticmethod
    def commit(runtime: FakeRuntime, enabled: bool, hosts: list[str]) -> web.Response:
        if enabled != runtime.enabled or hosts != runtime.allowed_hosts:
            runtime.enabled = enabled
            runtime.allowed_hosts = hosts
            runtime.version += 1
        return web.json_response(runtime.egress_json())

    # Handlers.

    async def get_status(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "version": "0.1.0",
                "uptime_seconds": 12.5,
                "runtimes": len(self.runtimes),
                "upstream_dns": ["198.51.100.53:53"],
            }
        )

    async def list_runtimes(self, request: web.Request) -> web.Response:
        return web.json_response({"items": [r.to_json() for r in self.runtimes.values()]})

    async def create_runtime(self, request: web.Request) -> web.Response:
        body = await self.json_body(request)
        name = body.get("name")
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise ApiFailure(
                400,
                "invalid_name",
                f"invalid runtime name {name!r}: use [a-z0-9][a-z0-9_-]{{0,30}}",
                "name",
            )
        if name in self.runtimes:
            raise ApiFailure(409, "already_exists", f"runtime {name!r} already exists", "name")

        netns = body.get("netns")
        if netns is None:
            runtime = self.add_runtime(name)
        elif netns in EXISTING_NETNS:
            runtime = self.add_runtime(name)
            runtime.netns = EXISTING_NETNS[netns]
            runtime.adopted = True
        else:
            raise ApiFailure(
                422,
                "netns_not_found",
                f"network namespace {netns!r} not found: create it with `ip netns add`",
                "netns",
            )
        return web.json_response(runtime.to_json(), status=201)

    async def get_runtime(self, request: web.Request) -> web.Response:
        return web.json_response(self.lookup(request).to_json())

    async def delete_runtime(self, request: web.Request) -> web.Response:
        runtime = self.lookup(request)
        del self.runtimes[runtime.name]
        return web.Response(status=204)

    async def get_egress(self, request: web.Request) -> web.Response:
        return web.json_response(self.lookup(request).egress_json())

    async def put_egress(self, request: web.Request) -> web.Response:
        runtime = self.write_target(request)
        body = await self.json_body(request)
        if not isinstance(body.get("enabled"), bool):
            raise ApiFailure(400, "invalid_request", "enabled must be a boolean", "enabled")
        force = bool(body.get("force", False))
        hosts = canonical_hosts(body.get("allowed_hosts"), "allowed_hosts", force)
        return self.commit(runtime, body["enabled"], list(dict.fromkeys(hosts)))

    async def patch_egress(self, request: web.Request) -> web.Response:
        runtime = self.write_target(request)
        body = await self.json_body(request)
        enabled = body.get("enabled", runtime.enabled)
        if not isinstance(enabled, bool):
            raise ApiFailure(400, "invalid_request", "enabled must be a boolean", "enabled")
        hosts = runtime.allowed_hosts
        if "allowed_hosts" in body:
            force = bool(body.get("force", False))
            hosts = canonical_hosts(body["allowed_hosts"], "allowed_hosts", force)
        return self.commit(runtime, enabled, list(dict.fromkeys(hosts)))

    async def allow(self, request: web.Request) -> web.Response:
        runtime = self.write_target(request)
        body = await self.json_body(request)
        added = canonical_hosts(body.get("hosts"), "hosts", bool(body.get("force", False)))
        hosts = list(dict.fromkeys(runtime.allowed_hosts + added))
        return self.commit(runtime, runtime.enabled, hosts)

    async def remove(self, request: web.Request) -> web.Response:
        runtime = self.write_target(request)
        body = await self.json_body(request)
        removed = canonical_hosts(body.get("hosts"), "hosts", force=True)
        for index, host in enumerate(removed):
            if host not in runtime.allowed_hosts:
                raise ApiFailure(
                    400,
                    "invalid_request",
                    f"host {host!r} is not in the allowlist of runtime {runtime.name!r}",
                    f"hosts[{index}]",
                )
        hosts = [h for h in runtime.allowed_hosts if h not in removed]
        return self.commit(runtime, runtime.enabled, hosts)

    async def enable(self, request: web.Request) -> web.Response:
        runtime = self.write_target(request)
        return self.commit(runtime, True, runtime.allowed_hosts)

    async def disable(self, request: web.Request) -> web.Response:
        runtime = self.write_target(request)
        return self.commit(runtime, False, runtime.allowed_hosts)

    async def list_events(self, request: web.Request) -> web.Response:
        runtime = self.lookup(request)
        records = [(e["seq"], e["event"]) for e in runtime.events]
        return web.json_response(page(records, request.query))

    async def list_audits(self, request: web.Request) -> web.Response:
        runtime_filter = request.query.get("runtime")
        category_filter = request.query.get("category")
        records = [
            (audit["id"], audit)
            for audit in self.audits
            if runtime_filter in (None, audit["runtime"])
            and category_filter in (None, audit["category"])
        ]
        return web.json_response(page(records, request.query))


def page(records: list[tuple[int, dict[str, Any]]], query: Any) -> dict[str, Any]:
    """Page ``(sequence, item)`` records by the ``limit``, ``after`` and ``order`` parameters.

    ``next`` is the sequence of the last item returned. Ascending pages keep the ``after``
    cursor when nothing is new, so a poller can send it again.
    """
    try:
        limit = int(query.get("limit", "50"))
        after = int(query["after"]) if "after" in query else None
    except ValueError:
        raise ApiFailure(400, "invalid_request", "limit and after must be integers") from None
    order = query.get("order", "desc")
    if order not in ("asc", "desc") or not 1 <= limit <= 1000:
        raise ApiFailure(400, "invalid_request", f"bad order {order!r} or limit {limit}")

    if order == "asc":
        selected = sorted(r for r in records if after is None or r[0] > after)
    else:
        selected = sorted((r for r in records if after is None or r[0] < after), reverse=True)
    chosen = selected[:limit]

    if chosen:
        cursor: str | None = str(chosen[-1][0])
    elif order == "asc" and after is not None:
        cursor = str(after)
    else:
        cursor = None
    if order == "desc" and len(selected) <= limit:
        cursor = None
    return {"items": [item for _, item in chosen], "next": cursor}


@contextmanager
def serve_fake_runtad(socket_path: Path) -> Iterator[FakeRuntad]:
    """Serve a FakeRuntad on ``socket_path`` from a background thread until the block ends."""
    fake = FakeRuntad()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(fake.build_app())
    ready = threading.Event()

    async def start() -> None:
        await runner.setup()
        await web.UnixSite(runner, str(socket_path)).start()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="fake-runtad", daemon=True)
    thread.start()
    if not ready.wait(timeout=10):
        raise RuntimeError(f"fake runtad did not start on {socket_path} within 10 s")
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
