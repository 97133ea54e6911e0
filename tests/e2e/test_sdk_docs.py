"""The egress documentation's Python SDK snippets, run verbatim against a real runtad.

Each snippet runs in a fresh interpreter after the lines the documentation assumes
(``runta = Runta()`` and ``runtime = runta.runtimes.get("worker")``), with RUNTA_SOCKET
pointing at the daemon. The AsyncRunta twin of each snippet is the same call awaited.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest

from runta import Runta
from tests.e2e.runtad_process import REPO_ROOT, RuntadProcess, SandboxHandle

pytestmark = pytest.mark.root

RUNTIME = "worker"
DOCUMENTED_HOSTS = ["pypi.org", "*.pythonhosted.org", "api.openai.com"]
SNIPPET_TIMEOUT = 60
# An audit event is stored within the fold window (2 s by default) plus the writer's turn.
STORED_WITHIN = 6.0

SYNC_PRELUDE = """\
from runta import Runta
runta = Runta()
runtime = runta.runtimes.get("worker")
"""

ASYNC_TEMPLATE = """\
import asyncio
from runta import AsyncRunta

async def main() -> None:
    runta = AsyncRunta()
    runtime = await runta.runtimes.get("worker")
{body}
    await runta.aclose()

asyncio.run(main())
"""

# The documentation's lines, keyed by what they do: (Runta, AsyncRunta twin).
SNIPPETS = {
    "allow": (
        'runtime.egress.allow(["pypi.org", "*.pythonhosted.org", "api.openai.com"])\n',
        'await runtime.egress.allow(["pypi.org", "*.pythonhosted.org", "api.openai.com"])\n',
    ),
    "enable": ("runtime.egress.enable()\n", "await runtime.egress.enable()\n"),
    "list": ("print(runtime.egress.list())\n", "print(await runtime.egress.list())\n"),
    "disable": ("runtime.egress.disable()\n", "await runtime.egress.disable()\n"),
    "update_policy": (
        (
            "from runta import EgressPolicy\n"
            "runtime.egress.update_policy("
            ' EgressPolicy(enabled=True, allowed_hosts=["api.github.com"]))\n'
        ),
        (
            "from runta import EgressPolicy\n"
            "await runtime.egress.update_policy("
            ' EgressPolicy(enabled=True, allowed_hosts=["api.github.com"]))\n'
        ),
    ),
    "audit": (
        (
            "for event in runtime.egress.audit(limit=20):"
            " print(event.action, event.host, event.path, event.reason)\n"
        ),
        (
            "for event in await runtime.egress.audit(limit=20):"
            " print(event.action, event.host, event.path, event.reason)\n"
        ),
    ),
    "audits_list": (
        (
            'for audit in runta.audits.list(runtime=runtime, category="egress", limit=20):'
            " print(audit.category, audit.payload)\n"
        ),
        (
            'for audit in await runta.audits.list(runtime=runtime, category="egress", limit=20):'
            " print(audit.category, audit.payload)\n"
        ),
    ),
}
FLAVOURS = ["sync", "async"]


def program(flavour: str, *names: str) -> str:
    """Return a program that runs the named snippets in order, in the given flavour."""
    if flavour == "sync":
        return SYNC_PRELUDE + "".join(SNIPPETS[name][0] for name in names)
    body = "".join(SNIPPETS[name][1] for name in names)
    return ASYNC_TEMPLATE.format(body=textwrap.indent(body, "    "))


def run_snippets(daemon: RuntadProcess, flavour: str, *names: str) -> str:
    """Run the snippets in a fresh interpreter and return its output; it must not fail or warn."""
    env = {**os.environ, "RUNTA_SOCKET": str(daemon.socket_path)}
    # NOTE: the documented `runta = Runta()` is never closed, so at exit the pooled
    # connection's socket is collected with a ResourceWarning, which only -W shows.
    warnings = ["-W", "error"]
    if flavour == "sync":
        warnings += ["-W", "ignore::ResourceWarning"]
    completed = subprocess.run(
        [sys.executable, *warnings, "-c", program(flavour, *names)],
        check=False,
        capture_output=True,
        text=True,
        timeout=SNIPPET_TIMEOUT,
        env=env,
        cwd=str(REPO_ROOT),
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr == ""
    return completed.stdout


@pytest.fixture(scope="module")
def worker(runtad: RuntadProcess) -> Iterator[SandboxHandle]:
    """The documentation's runtime "worker", created through the SDK."""
    with Runta(runtad.socket_path) as runta:
        runtime = runta.runtimes.create(RUNTIME)
    runtad.sandboxes.add(RUNTIME)
    yield SandboxHandle(runtad, RUNTIME, runtime.netns)


def set_policy(daemon: RuntadProcess, enabled: bool, hosts: list[str]) -> None:
    response = daemon.api(
        "PUT", f"/runtimes/{RUNTIME}/egress", {"enabled": enabled, "allowed_hosts": hosts}
    )
    assert response.status_code == 200, response.text


@pytest.fixture
def denied_host(runtad: RuntadProcess, worker: SandboxHandle) -> str:
    """Return a host whose lookup in the worker was just denied and stored as an event."""
    host = f"denied-{secrets.token_hex(3)}.example.com"
    set_policy(runtad, True, [])
    worker.dig(host)
    deadline = time.monotonic() + STORED_WITHIN
    while time.monotonic() < deadline:
        events = runtad.api("GET", f"/runtimes/{RUNTIME}/egress/events").json()["items"]
        if any(event["host"] == host for event in events):
            return host
        time.sleep(0.2)
    raise AssertionError(f"no event for {host} within {STORED_WITHIN} s")


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_allow_snippet(runtad: RuntadProcess, worker: SandboxHandle, flavour: str) -> None:
    set_policy(runtad, False, [])
    output = run_snippets(runtad, flavour, "allow")
    assert output == ""
    egress = worker.egress()
    assert egress["allowed_hosts"] == DOCUMENTED_HOSTS
    assert egress["enabled"] is False


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_enable_snippet(runtad: RuntadProcess, worker: SandboxHandle, flavour: str) -> None:
    set_policy(runtad, False, DOCUMENTED_HOSTS)
    run_snippets(runtad, flavour, "enable")
    egress = worker.egress()
    assert egress["enabled"] is True
    assert egress["allowed_hosts"] == DOCUMENTED_HOSTS


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_list_snippet_prints_hosts(
    runtad: RuntadProcess, worker: SandboxHandle, flavour: str
) -> None:
    set_policy(runtad, True, DOCUMENTED_HOSTS)
    output = run_snippets(runtad, flavour, "list")
    assert output == "['pypi.org', '*.pythonhosted.org', 'api.openai.com']\n"


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_enforcement_block(runtad: RuntadProcess, worker: SandboxHandle, flavour: str) -> None:
    set_policy(runtad, False, [])
    output = run_snippets(runtad, flavour, "allow", "enable", "list")
    assert output == "['pypi.org', '*.pythonhosted.org', 'api.openai.com']\n"
    egress = worker.egress()
    assert egress["enabled"] is True
    resolved = {entry["host"] for entry in egress["entries"] if entry["status"] == "resolved"}
    assert "pypi.org" in resolved


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_disable_snippet(runtad: RuntadProcess, worker: SandboxHandle, flavour: str) -> None:
    set_policy(runtad, True, DOCUMENTED_HOSTS)
    run_snippets(runtad, flavour, "disable")
    egress = worker.egress()
    assert egress["enabled"] is False
    assert egress["allowed_hosts"] == DOCUMENTED_HOSTS


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_update_policy_snippet(runtad: RuntadProcess, worker: SandboxHandle, flavour: str) -> None:
    set_policy(runtad, False, DOCUMENTED_HOSTS)
    run_snippets(runtad, flavour, "update_policy")
    egress = worker.egress()
    assert egress["allowed_hosts"] == ["api.github.com"]
    assert egress["enabled"] is True


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_audit_snippet_prints_event(runtad: RuntadProcess, denied_host: str, flavour: str) -> None:
    output = run_snippets(runtad, flavour, "audit")
    lines = output.splitlines()
    assert 1 <= len(lines) <= 20
    assert f"deny {denied_host} None dns_name_not_allowed" in lines


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_audits_list_snippet_prints_payloads(
    runtad: RuntadProcess, denied_host: str, flavour: str
) -> None:
    output = run_snippets(runtad, flavour, "audits_list")
    lines = output.splitlines()
    assert 1 <= len(lines) <= 20
    assert all(line.startswith("egress {") for line in lines)
    assert any(f"'host': '{denied_host}'" in line and "'action': 'deny'" in line for line in lines)
    assert all(f"'runtime': '{RUNTIME}'" in line for line in lines)
