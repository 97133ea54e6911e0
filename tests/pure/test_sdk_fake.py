"""Python SDK against the fake runtad API on a unix socket."""

from __future__ import annotations

import asyncio
import errno
import shutil
import socket
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

import runta
import runta.errors
from runta import AsyncRunta, EgressPolicy, Runta
from runta._http import DEFAULT_SOCKET
from runta._transport import unavailable_error
from runta.models import Egress
from tests.fakes import api_server
from tests.fakes.api_server import ApiFailure, FakeRuntad, FakeRuntime, serve_fake_runtad

# The shared fake reports every runtime's inspect mode as "first" and ignores the field in
# writes. These subclasses store it, and test_cli_fake.py installs them too, through
# keep_inspect_in_fake.
# TODO: move inspect into tests/fakes/api_server.py and drop these subclasses.


@dataclass
class InspectRuntime(FakeRuntime):
    inspect: str = "first"

    def egress_json(self) -> dict[str, Any]:
        return {**super().egress_json(), "inspect": self.inspect}


class InspectFake(FakeRuntad):
    """FakeRuntad whose PUT and PATCH of the egress policy store ``inspect`` like runtad."""

    async def put_egress(self, request: web.Request) -> web.Response:
        return await self.write_inspect(request, super().put_egress)

    async def patch_egress(self, request: web.Request) -> web.Response:
        return await self.write_inspect(request, super().patch_egress)

    async def write_inspect(
        self, request: web.Request, write: Callable[[web.Request], Awaitable[web.Response]]
    ) -> web.Response:
        body = await self.json_body(request)
        runtime = self.write_target(request)
        assert isinstance(runtime, InspectRuntime)
        mode = body.get("inspect", runtime.inspect)
        if mode not in ("first", "all"):
            raise ApiFailure(
                400, "invalid_request",
                f"field 'inspect' must be \"first\" or \"all\", not {mode!r}", "inspect",
            )
        version = runtime.version
        response = await write(request)
        if mode == runtime.inspect:
            return response
        runtime.inspect = mode
        if runtime.version == version:
            runtime.version += 1
        return web.json_response(runtime.egress_json())


def keep_inspect_in_fake(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make serve_fake_runtad serve an InspectFake with InspectRuntime runtimes."""
    monkeypatch.setattr(api_server, "FakeRuntad", InspectFake)
    monkeypatch.setattr(api_server, "FakeRuntime", InspectRuntime)


@pytest.fixture(autouse=True)
def fake_keeps_inspect(monkeypatch: pytest.MonkeyPatch) -> None:
    keep_inspect_in_fake(monkeypatch)


@pytest.fixture
def socket_path() -> Iterator[Path]:
    # A short directory under /tmp: unix socket paths are limited to 107 bytes.
    directory = tempfile.mkdtemp(prefix="runta-sdk-", dir="/tmp")
    yield Path(directory) / "runtad.sock"
    shutil.rmtree(directory)


@pytest.fixture
def fake(socket_path: Path) -> Iterator[FakeRuntad]:
    with serve_fake_runtad(socket_path) as server:
        server.add_runtime("worker")
        yield server


@pytest.fixture
def client(fake: FakeRuntad, socket_path: Path) -> Iterator[Runta]:
    with Runta(socket=socket_path) as sdk:
        yield sdk


def last_request(fake: FakeRuntad, path_suffix: str) -> dict[str, object]:
    matching = [r for r in fake.requests if r.path.endswith(path_suffix)]
    assert matching, f"no request to *{path_suffix}"
    return {"body": matching[-1].body, "headers": matching[-1].headers}


# Documentation examples, run verbatim.


def test_doc_lines_sync(
    fake: FakeRuntad,
    socket_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RUNTA_SOCKET", str(socket_path))

    from runta import EgressPolicy, Runta

    runta = Runta()
    runtime = runta.runtimes.get("worker")
    runtime.egress.allow(["pypi.org", "*.pythonhosted.org", "api.openai.com"])
    runtime.egress.enable()
    print(runtime.egress.list())
    runtime.egress.disable()
    runtime.egress.update_policy(EgressPolicy(enabled=True, allowed_hosts=["api.github.com"]))
    for event in runtime.egress.audit(limit=20):
        print(event.action, event.host, event.path, event.reason)
    for audit in runta.audits.list(runtime=runtime, category="egress", limit=20):
        print(audit.category, audit.payload)
    runta.close()

    assert capsys.readouterr().out == "['pypi.org', '*.pythonhosted.org', 'api.openai.com']\n"
    assert fake.runtimes["worker"].enabled is True
    assert fake.runtimes["worker"].allowed_hosts == ["api.github.com"]


def test_doc_lines_async(
    fake: FakeRuntad,
    socket_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RUNTA_SOCKET", str(socket_path))
    fake.add_event("worker", host="example.com", reason="host not in allowlist")

    async def doc_lines() -> None:
        runta = AsyncRunta()
        runtime = await runta.runtimes.get("worker")
        await runtime.egress.allow(["pypi.org", "*.pythonhosted.org", "api.openai.com"])
        await runtime.egress.enable()
        print(await runtime.egress.list())
        await runtime.egress.disable()
        await runtime.egress.update_policy(
            EgressPolicy(enabled=True, allowed_hosts=["api.github.com"])
        )
        for event in await runtime.egress.audit(limit=20):
            print(event.action, event.host, event.path, event.reason)
        for audit in await runta.audits.list(runtime=runtime, category="egress", limit=20):
            print(audit.category, audit.payload["host"])
        await runta.aclose()

    asyncio.run(doc_lines())

    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "['pypi.org', '*.pythonhosted.org', 'api.openai.com']"
    assert lines[1] == "deny example.com None host not in allowlist"
    assert lines[2] == "egress example.com"
    assert fake.runtimes["worker"].allowed_hosts == ["api.github.com"]


def test_list_prints_hosts(client: Runta, capsys: pytest.CaptureFixture[str]) -> None:
    egress = client.runtimes.egress("worker")
    egress.allow(["pypi.org", "*.pythonhosted.org"])

    hosts = egress.list()
    print(hosts)

    assert capsys.readouterr().out == "['pypi.org', '*.pythonhosted.org']\n"
    assert hosts == ["pypi.org", "*.pythonhosted.org"]
    assert hosts.version == 2
    assert hosts.enabled is False


# Egress resource.


def test_table_full_document(client: Runta, fake: FakeRuntad) -> None:
    client.runtimes.egress("worker").allow(["pypi.org", "*.pythonhosted.org"])

    table = client.runtimes.egress("worker").table()

    assert isinstance(table, Egress)
    assert table.to_json() == fake.runtimes["worker"].egress_json()
    exact, wildcard = table.entries
    assert exact.kind == "exact"
    assert exact.addresses[0].address == "192.0.2.10"
    assert exact.addresses[0].expires_at == datetime(2026, 12, 4, 20, 15, tzinfo=UTC)
    assert exact.addresses[0].source == "resolver"
    assert wildcard.status == "wildcard"
    assert wildcard.addresses == ()


def test_get_policy_returns_policy(client: Runta) -> None:
    client.runtimes.egress("worker").allow(["pypi.org"])

    policy = client.runtimes.egress("worker").get_policy()

    assert policy == EgressPolicy(enabled=False, allowed_hosts=("pypi.org",), inspect="first")


def test_allow_normalizes_url(client: Runta, fake: FakeRuntad) -> None:
    client.runtimes.egress("worker").allow(["https://PyPI.org/simple", "pypi.org."])

    assert last_request(fake, "/allow")["body"] == {"hosts": ["pypi.org", "pypi.org"]}


def test_allow_single_string_is_one_host(client: Runta, fake: FakeRuntad) -> None:
    client.runtimes.egress("worker").allow("pypi.org")

    assert last_request(fake, "/allow")["body"] == {"hosts": ["pypi.org"]}


def test_allow_port_warns_and_drops(client: Runta, fake: FakeRuntad) -> None:
    with pytest.warns(runta.PortIgnoredWarning):
        client.runtimes.egress("worker").allow(["pypi.org:443"])

    assert last_request(fake, "/allow")["body"] == {"hosts": ["pypi.org"]}


def test_allow_local_rejection_sends_nothing(client: Runta, fake: FakeRuntad) -> None:
    with pytest.raises(runta.errors.InvalidHostError) as caught:
        client.runtimes.egress("worker").allow(["pypi.org", "https://pypi.org@evil.test/"])

    assert caught.value.field == "hosts[1]"
    assert caught.value.code == "invalid_host"
    assert caught.value.host == "https://pypi.org@evil.test/"
    assert caught.value.reason == "has_userinfo"
    assert "user info" in caught.value.message
    assert not [r for r in fake.requests if r.path.endswith("/allow")]


def test_allow_server_rejection_names_host(client: Runta) -> None:
    with pytest.raises(runta.errors.InvalidHostError) as caught:
        client.runtimes.egress("worker").allow(
            ["pypi.org", "https://pypi.org/simple"], normalize=False
        )

    assert caught.value.status == 400
    assert caught.value.field == "hosts[1]"
    assert caught.value.host == "https://pypi.org/simple"
    assert "use pypi.org instead" in caught.value.message


def test_invalid_host_caught_everywhere(client: Runta) -> None:
    egress = client.runtimes.egress("worker")

    with pytest.raises(runta.InvalidHostError):
        runta.normalize_host("https://user:pw@pypi.org/")
    with pytest.raises(runta.InvalidHostError):
        egress.allow(["https://user:pw@pypi.org/"])
    with pytest.raises(runta.InvalidHostError):
        egress.allow(["pypi.org/simple"], normalize=False)
    with pytest.raises(runta.RuntaError):
        egress.allow(["https://user:pw@pypi.org/"])


def test_public_suffix_needs_force(client: Runta) -> None:
    egress = client.runtimes.egress("worker")

    with pytest.raises(runta.PublicSuffixWildcardError):
        egress.allow(["*.com"])
    table = egress.allow(["*.com"], force=True)

    assert table.allowed_hosts == ("*.com",)


def test_if_version_sends_if_match(client: Runta, fake: FakeRuntad) -> None:
    client.runtimes.egress("worker").enable(if_version=1)

    assert last_request(fake, "/enable")["headers"]["If-Match"] == "1"  # type: ignore[index]
    assert fake.runtimes["worker"].version == 2


def test_if_version_conflict(client: Runta, fake: FakeRuntad) -> None:
    with pytest.raises(runta.VersionConflictError) as caught:
        client.runtimes.egress("worker").allow(["pypi.org"], if_version=7)

    assert caught.value.status == 409
    assert fake.runtimes["worker"].allowed_hosts == []


def test_remove_absent_host(client: Runta) -> None:
    with pytest.raises(runta.InvalidRequestError) as caught:
        client.runtimes.egress("worker").remove(["pypi.org"])

    assert caught.value.field == "hosts[0]"


def test_remove_normalizes_url(client: Runta, fake: FakeRuntad) -> None:
    egress = client.runtimes.egress("worker")
    egress.allow(["pypi.org", "api.openai.com"])

    table = egress.remove(["https://pypi.org/"])

    assert last_request(fake, "/remove")["body"] == {"hosts": ["pypi.org"]}
    assert table.allowed_hosts == ("api.openai.com",)


def test_update_policy_puts_whole_policy(client: Runta, fake: FakeRuntad) -> None:
    egress = client.runtimes.egress("worker")
    egress.allow(["pypi.org"])

    egress.update_policy(EgressPolicy(enabled=True, allowed_hosts=["https://api.github.com/x"]))

    put = [r for r in fake.requests if r.method == "PUT"][-1]
    assert put.body == {"enabled": True, "allowed_hosts": ["api.github.com"]}
    assert fake.runtimes["worker"].allowed_hosts == ["api.github.com"]


def test_patch_policy_sends_given_fields(client: Runta, fake: FakeRuntad) -> None:
    client.runtimes.egress("worker").patch_policy(enabled=True)

    patch = [r for r in fake.requests if r.method == "PATCH"][-1]
    assert patch.body == {"enabled": True}
    assert fake.runtimes["worker"].enabled is True


def test_patch_policy_sends_inspect(client: Runta, fake: FakeRuntad) -> None:
    table = client.runtimes.egress("worker").patch_policy(inspect="all")

    patch = [r for r in fake.requests if r.method == "PATCH"][-1]
    assert patch.body == {"inspect": "all"}
    assert table.inspect == "all"
    assert table.version == 2
    assert client.runtimes.egress("worker").table().inspect == "all"


def test_patch_policy_inspect_with_fields(client: Runta, fake: FakeRuntad) -> None:
    client.runtimes.egress("worker").patch_policy(
        enabled=True, allowed_hosts=["https://pypi.org/"], inspect="all", if_version=1
    )

    patch = [r for r in fake.requests if r.method == "PATCH"][-1]
    assert patch.body == {"enabled": True, "allowed_hosts": ["pypi.org"], "inspect": "all"}
    assert patch.headers["If-Match"] == "1"


def test_patch_policy_rejects_bad_inspect(client: Runta, fake: FakeRuntad) -> None:
    with pytest.raises(runta.InvalidInspectModeError) as caught:
        client.runtimes.egress("worker").patch_policy(inspect="strict")

    assert caught.value.value == "strict"
    assert caught.value.choices == ("first", "all")
    assert caught.value.field == "inspect"
    assert caught.value.code == "invalid_request"
    assert "invalid inspect mode 'strict'" in caught.value.message
    assert "use 'first' or 'all'" in caught.value.message
    assert not [r for r in fake.requests if r.method == "PATCH"]


def test_patch_policy_without_inspect(client: Runta, fake: FakeRuntad) -> None:
    egress = client.runtimes.egress("worker")
    egress.patch_policy(inspect="all")

    table = egress.patch_policy(enabled=True)

    patch = [r for r in fake.requests if r.method == "PATCH"][-1]
    assert patch.body == {"enabled": True}
    assert table.inspect == "all"


def test_update_policy_sends_inspect(client: Runta, fake: FakeRuntad) -> None:
    egress = client.runtimes.egress("worker")

    table = egress.update_policy(
        EgressPolicy(enabled=True, allowed_hosts=["pypi.org"], inspect="all")
    )

    put = [r for r in fake.requests if r.method == "PUT"][-1]
    assert put.body == {"enabled": True, "allowed_hosts": ["pypi.org"], "inspect": "all"}
    assert table.inspect == "all"


def test_update_policy_keeps_inspect(client: Runta, fake: FakeRuntad) -> None:
    egress = client.runtimes.egress("worker")
    egress.patch_policy(inspect="all")

    table = egress.update_policy(EgressPolicy(enabled=True, allowed_hosts=["pypi.org"]))

    put = [r for r in fake.requests if r.method == "PUT"][-1]
    assert "inspect" not in put.body
    assert table.inspect == "all"


def test_policy_round_trip_inspect(client: Runta, fake: FakeRuntad) -> None:
    egress = client.runtimes.egress("worker")
    egress.patch_policy(allowed_hosts=["pypi.org"], inspect="all")

    policy = egress.get_policy()
    egress.update_policy(policy)

    assert policy.inspect == "all"
    put = [r for r in fake.requests if r.method == "PUT"][-1]
    assert put.body == {"enabled": False, "allowed_hosts": ["pypi.org"], "inspect": "all"}


def test_policy_rejects_bad_inspect() -> None:
    with pytest.raises(runta.InvalidInspectModeError, match="'everything'") as caught:
        EgressPolicy(enabled=True, allowed_hosts=["pypi.org"], inspect="everything")

    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, runta.InvalidRequestError)


def test_policy_json_inspect() -> None:
    strict = EgressPolicy(enabled=True, allowed_hosts=["pypi.org"], inspect="all")
    unchanged = EgressPolicy(enabled=True, allowed_hosts=["pypi.org"])

    assert strict.to_json() == {"enabled": True, "allowed_hosts": ["pypi.org"], "inspect": "all"}
    assert EgressPolicy.from_json(strict.to_json()) == strict
    assert unchanged.to_json() == {"enabled": True, "allowed_hosts": ["pypi.org"]}
    assert EgressPolicy.from_json(unchanged.to_json()).inspect is None


def test_async_patch_policy_inspect(fake: FakeRuntad, socket_path: Path) -> None:
    async def set_strict() -> tuple[Egress, Egress]:
        async with AsyncRunta(socket=socket_path) as client:
            egress = client.runtimes.egress("worker")
            patched = await egress.patch_policy(inspect="all")
            replaced = await egress.update_policy(
                EgressPolicy(enabled=True, allowed_hosts=[], inspect="first")
            )
            return patched, replaced

    patched, replaced = asyncio.run(set_strict())

    assert patched.inspect == "all"
    assert replaced.inspect == "first"
    bodies = [r.body for r in fake.requests if r.method in ("PATCH", "PUT")]
    assert bodies == [
        {"inspect": "all"}, {"enabled": True, "allowed_hosts": [], "inspect": "first"}
    ]


def test_async_patch_rejects_bad_inspect(fake: FakeRuntad, socket_path: Path) -> None:
    async def set_bad_mode() -> None:
        async with AsyncRunta(socket=socket_path) as client:
            await client.runtimes.egress("worker").patch_policy(inspect="ALL")

    with pytest.raises(runta.InvalidInspectModeError, match="'ALL'"):
        asyncio.run(set_bad_mode())
    assert not [r for r in fake.requests if r.method == "PATCH"]


def test_policy_rejects_string_hosts() -> None:
    with pytest.raises(TypeError, match="allowed_hosts=\\['pypi.org'\\]"):
        EgressPolicy(enabled=True, allowed_hosts="pypi.org")


# Runtimes.


def test_runtime_get_fields(client: Runta) -> None:
    runtime = client.runtimes.get("worker")

    assert runtime.name == "worker"
    assert runtime.netns == "/run/netns/runta-worker"
    assert runtime.adopted is False
    assert runtime.created_at == datetime(2026, 12, 4, 20, 10, tzinfo=UTC)
    assert runtime.egress_state is not None
    assert runtime.egress_state.enabled is False
    assert runtime.egress_state.version == 1


def test_runtime_create_list_delete(client: Runta, fake: FakeRuntad) -> None:
    created = client.runtimes.create("builder")
    names = [r.name for r in client.runtimes.list()]
    client.runtimes.delete("builder")

    assert created.name == "builder"
    assert names == ["worker", "builder"]
    assert "builder" not in fake.runtimes


def test_runtime_create_adopts_netns(client: Runta, fake: FakeRuntad) -> None:
    client.runtimes.create("adopted", netns="existing")

    assert fake.requests[-1].body == {"name": "adopted", "netns": "existing"}
    assert client.runtimes.get("adopted").adopted is True


def test_runtime_create_without_netns_key(client: Runta, fake: FakeRuntad) -> None:
    client.runtimes.create("builder", netns=None)

    assert fake.requests[-1].body == {"name": "builder"}


def test_runtime_name_quoted_in_path(client: Runta, fake: FakeRuntad) -> None:
    with pytest.raises(runta.NotFoundError):
        client.runtimes.get("a/b")

    assert fake.requests[-1].raw_path == "/v1/runtimes/a%2Fb"


def test_runtime_without_client_explains() -> None:
    runtime = runta.Runtime.from_json(FakeRuntad().add_runtime("worker").to_json())

    with pytest.raises(RuntimeError, match="has no client"):
        _ = runtime.egress


# Audits.


def test_audit_events_query(client: Runta, fake: FakeRuntad) -> None:
    fake.add_event("worker", host="example.com", address="198.51.100.7", port=443)

    page = client.runtimes.egress("worker").audit(limit=20)

    assert fake.requests[-1].query == {"limit": "20"}
    assert [event.host for event in page] == ["example.com"]
    assert page[0].port == 443
    assert page[0].time is not None and page[0].time.tzinfo is not None
    assert page.next is None


def test_audits_list_filters(client: Runta, fake: FakeRuntad) -> None:
    fake.add_runtime("builder")
    fake.add_event("worker", host="example.com")
    fake.add_event("builder", host="other.test")
    runtime = client.runtimes.get("worker")

    page = client.audits.list(runtime=runtime, category="egress", limit=5)

    assert fake.requests[-1].query == {"runtime": "worker", "category": "egress", "limit": "5"}
    assert [audit.payload["host"] for audit in page] == ["example.com"]
    assert page[0].runtime == "worker"


def test_audits_list_after_cursor(client: Runta, fake: FakeRuntad) -> None:
    for host in ("a.test", "b.test", "c.test"):
        fake.add_event("worker", host=host)

    first = client.audits.list(limit=2, order="asc")
    second = client.audits.list(limit=2, order="asc", after=first.next)

    assert [a.payload["host"] for a in first] == ["a.test", "b.test"]
    assert [a.payload["host"] for a in second] == ["c.test"]


# Errors.

ERROR_CASES = [
    (400, "invalid_request", runta.InvalidRequestError),
    (400, "invalid_host", runta.errors.InvalidHostError),
    (400, "public_suffix_wildcard", runta.PublicSuffixWildcardError),
    (400, "invalid_name", runta.InvalidNameError),
    (403, "forbidden", runta.ForbiddenError),
    (404, "not_found", runta.NotFoundError),
    (409, "already_exists", runta.AlreadyExistsError),
    (409, "version_conflict", runta.VersionConflictError),
    (422, "netns_not_found", runta.NetnsNotFoundError),
    (500, "internal", runta.InternalError),
    (503, "kernel_apply_failed", runta.KernelApplyFailedError),
]


@pytest.mark.parametrize(("status", "code", "error_class"), ERROR_CASES)
def test_error_code_maps_to_class(
    client: Runta, fake: FakeRuntad, status: int, code: str, error_class: type[runta.RuntaError]
) -> None:
    fake.fail_next(status, code, f"{code} happened on value x: do y", "hosts[0]")

    with pytest.raises(runta.RuntaError) as caught:
        client.runtimes.egress("worker").allow(["pypi.org"])

    assert type(caught.value) is error_class
    assert caught.value.code == code
    assert caught.value.message == f"{code} happened on value x: do y"
    assert str(caught.value) == caught.value.message
    assert caught.value.field == "hosts[0]"
    assert caught.value.status == status


def test_unknown_code_raises_root(client: Runta, fake: FakeRuntad) -> None:
    fake.fail_next(418, "teapot", "runtad is a teapot")

    with pytest.raises(runta.RuntaError) as caught:
        client.runtimes.get("worker")

    assert type(caught.value) is runta.RuntaError
    assert caught.value.code == "teapot"
    assert caught.value.field is None


def test_natural_errors_from_fake(client: Runta) -> None:
    with pytest.raises(runta.InvalidNameError):
        client.runtimes.create("Worker!")
    with pytest.raises(runta.AlreadyExistsError):
        client.runtimes.create("worker")
    with pytest.raises(runta.NetnsNotFoundError) as caught:
        client.runtimes.create("other", netns="/run/netns/missing")
    assert caught.value.field == "netns"


def test_error_body_not_json() -> None:
    error = runta.errors.error_from_json(502, "<html>bad gateway</html>")

    assert isinstance(error, runta.UnexpectedResponseError)
    assert error.status == 502


def test_async_error_maps(fake: FakeRuntad, socket_path: Path) -> None:
    async def fetch_missing() -> None:
        async with AsyncRunta(socket=socket_path) as client:
            await client.runtimes.get("missing")

    with pytest.raises(runta.NotFoundError):
        asyncio.run(fetch_missing())


# Socket lookup and an unreachable daemon.


def test_socket_argument_beats_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNTA_SOCKET", "/tmp/from-env.sock")

    with Runta(socket="/tmp/from-argument.sock") as client:
        assert client.socket_path == "/tmp/from-argument.sock"


def test_socket_env_beats_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNTA_SOCKET", "/tmp/from-env.sock")

    with Runta() as client:
        assert client.socket_path == "/tmp/from-env.sock"


def test_socket_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNTA_SOCKET", raising=False)

    with Runta() as client:
        assert client.socket_path == DEFAULT_SOCKET == "/run/runta/runtad.sock"


def test_missing_socket_unavailable(socket_path: Path) -> None:
    with Runta(socket=socket_path) as client, pytest.raises(runta.DaemonUnavailableError) as caught:
        client.runtimes.list()

    assert str(socket_path) in caught.value.message
    assert "does not exist" in caught.value.message
    assert "start runtad" in caught.value.message.lower()
    assert "--socket" in caught.value.message
    assert "RUNTA_SOCKET" in caught.value.message
    assert caught.value.socket_path == str(socket_path)


def test_refused_socket_unavailable(socket_path: Path) -> None:
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(socket_path))
    listener.close()

    with Runta(socket=socket_path) as client, pytest.raises(runta.DaemonUnavailableError) as caught:
        client.runtimes.list()

    assert "connection refused" in caught.value.message
    assert str(socket_path) in caught.value.message


def test_missing_socket_async(socket_path: Path) -> None:
    async def list_runtimes() -> None:
        async with AsyncRunta(socket=socket_path) as client:
            await client.runtimes.list()

    with pytest.raises(runta.DaemonUnavailableError, match="does not exist"):
        asyncio.run(list_runtimes())


def test_permission_denied_names_group() -> None:
    # Root passes every permission check, so the OS error is built by hand here.
    exc = httpx.ConnectError("denied")
    exc.__cause__ = PermissionError(errno.EACCES, "Permission denied")

    error = unavailable_error("/run/runta/runtad.sock", exc, 30.0)

    assert "/run/runta/runtad.sock" in error.message
    assert "'runta' group" in error.message


def test_read_timeout_is_timeout_error() -> None:
    error = unavailable_error("/run/runta/runtad.sock", httpx.ReadTimeout("slow"), 30.0)

    assert isinstance(error, runta.DaemonTimeoutError)
    assert "30 s" in error.message
