"""The upstream name server down or slow: allowed names fail in bounded time, nothing opens.

The lab's DNS server stands in for the upstream. Its global mode drops every query or
delays every answer; each test puts it back to answering when it ends.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from tests.e2e.runtad_process import RuntadProcess, SandboxHandle
from tests.hostile.attempts import enforced_sandbox, exec_in, nft_table, wait_for_event

pytestmark = pytest.mark.root

# runtad's default upstream_timeout: one try per upstream server, one server in the lab.
UPSTREAM_TIMEOUT = 2.0
# Allowed through *.pythonhosted.org and never resolved ahead, so only a lookup that
# succeeds now could put its address (192.0.2.12) in the sets.
WILDCARD_NAME = "a.b.c.pythonhosted.org"
WILDCARD_ADDRESS = "192.0.2.12"
STATUS = re.compile(r"status: (\w+)")


@pytest.fixture
def upstream(runtad: RuntadProcess) -> Iterator[RuntadProcess]:
    """The module's daemon; its upstream answers again when the test ends."""
    yield runtad
    runtad.lab.dns.set_global_mode("answer")


def dig(sandbox: SandboxHandle, name: str) -> tuple[str | None, list[str], float]:
    """Query name (A) in the sandbox; return status, addresses and seconds until the reply."""
    started = time.monotonic()
    result = sandbox.run(["dig", "+time=8", "+tries=1", "@192.0.2.99", name, "A"], timeout=20)
    seconds = time.monotonic() - started
    found = STATUS.search(result.stdout)
    addresses = [
        line.split()[-1] for line in result.stdout.splitlines()
        if line and not line.startswith(";") and line.split()[3:4] == ["A"]
    ]  # fmt: skip
    return (found[1] if found else None), addresses, seconds


def in_allow4(sandbox: SandboxHandle, address: str) -> bool:
    return address in nft_table(sandbox.netns)["sets"]["allow4"]


def test_upstream_down_servfail_bounded(upstream: RuntadProcess) -> None:
    sandbox = enforced_sandbox(upstream, ["pypi.org", "*.pythonhosted.org"])
    upstream.lab.dns.set_global_mode("drop")

    status, addresses, seconds = dig(sandbox, WILDCARD_NAME)

    print(f"measured: upstream down, SERVFAIL after {seconds:.2f} s")
    assert status == "SERVFAIL"
    assert addresses == []
    assert UPSTREAM_TIMEOUT * 0.9 < seconds < UPSTREAM_TIMEOUT + 1.5
    assert not in_allow4(sandbox, WILDCARD_ADDRESS)
    event = wait_for_event(upstream, sandbox.name, lambda e: e["reason"] == "upstream_failed")
    assert event is not None
    assert event["host"] == WILDCARD_NAME


def test_upstream_down_gateway_reset_bounded(upstream: RuntadProcess) -> None:
    sandbox = enforced_sandbox(upstream, ["pypi.org", "*.pythonhosted.org"])
    upstream.lab.dns.set_global_mode("drop")
    started = time.monotonic()

    result = exec_in(upstream, sandbox.name, "nobody", [
        "curl", "-sS", "-k", "--max-time", "10", "--resolve",
        f"{WILDCARD_NAME}:443:{WILDCARD_ADDRESS}", f"https://{WILDCARD_NAME}/",
    ])  # fmt: skip
    seconds = time.monotonic() - started

    print(f"measured: upstream down, gateway reset after {seconds:.2f} s")
    assert result.returncode in (35, 56), result.stderr
    assert seconds < 2 * UPSTREAM_TIMEOUT + 2
    assert not in_allow4(sandbox, WILDCARD_ADDRESS)
    event = wait_for_event(upstream, sandbox.name, lambda e: e["reason"] == "resolve_failed")
    assert event is not None


def test_upstream_down_denied_name_fast(upstream: RuntadProcess) -> None:
    sandbox = enforced_sandbox(upstream, ["pypi.org"])
    upstream.lab.dns.set_global_mode("drop")

    status, _, seconds = dig(sandbox, "example.com")

    assert status == "NXDOMAIN"
    assert seconds < 1.0


def test_upstream_down_keeps_resolved_host(upstream: RuntadProcess) -> None:
    sandbox = enforced_sandbox(upstream, ["pypi.org"])
    upstream.lab.dns.set_global_mode("drop")

    result = sandbox.curl("http://192.0.2.10/")

    assert result.stdout == "200", result.stderr


def test_upstream_recovers_by_itself(upstream: RuntadProcess) -> None:
    sandbox = enforced_sandbox(upstream, ["*.pythonhosted.org"])
    upstream.lab.dns.set_global_mode("drop")
    failed, _, _ = dig(sandbox, WILDCARD_NAME)

    upstream.lab.dns.set_global_mode("answer")
    status, addresses, seconds = dig(sandbox, WILDCARD_NAME)

    assert failed == "SERVFAIL"
    assert status == "NOERROR"
    assert addresses == [WILDCARD_ADDRESS]
    assert seconds < 1.0
    assert in_allow4(sandbox, WILDCARD_ADDRESS)
    assert sandbox.curl(f"https://{WILDCARD_NAME}/").stdout == "200"


def test_upstream_slow_within_timeout(upstream: RuntadProcess) -> None:
    sandbox = enforced_sandbox(upstream, ["*.pythonhosted.org"])
    upstream.lab.dns.set_global_mode("answer", delay_ms=1000)

    status, addresses, seconds = dig(sandbox, WILDCARD_NAME)

    print(f"measured: upstream 1 s slow, answer after {seconds:.2f} s")
    assert status == "NOERROR"
    assert addresses == [WILDCARD_ADDRESS]
    assert 0.9 < seconds < 2.0


def test_upstream_slower_than_timeout(upstream: RuntadProcess) -> None:
    sandbox = enforced_sandbox(upstream, ["*.pythonhosted.org"])
    upstream.lab.dns.set_global_mode("answer", delay_ms=4000)

    status, addresses, seconds = dig(sandbox, WILDCARD_NAME)
    time.sleep(3.0)  # the late answer reaches runtad by now

    print(f"measured: upstream 4 s slow, SERVFAIL after {seconds:.2f} s")
    assert status == "SERVFAIL"
    assert addresses == []
    assert seconds < UPSTREAM_TIMEOUT + 1.5
    assert not in_allow4(sandbox, WILDCARD_ADDRESS)
