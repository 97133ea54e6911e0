"""TLS and HTTP from an enforced sandbox that name an allowed host but aim elsewhere.

The client picks the address itself (curl --resolve, or no name at all), so runtad's DNS
listener never sees it and only the gateway stands between the sandbox and the address.
"""

from __future__ import annotations

import pytest

from tests.e2e.runtad_process import RuntadProcess
from tests.hostile.attempts import (
    CALLERS,
    EXEC_SECONDS,
    FAST_SECONDS,
    denial_at,
    enforced_sandbox,
    exec_in,
    probe,
    wait_for_event,
)

pytestmark = pytest.mark.root

# Addresses that pypi.org does not resolve to in the lab (they serve example.com).
STRAY = ["198.51.100.7", "2001:db8::7"]
# curl exit codes of a connection the peer reset: 35 during the TLS handshake,
# 52 empty reply, 56 receive failure.
RESET_CODES = (35, 52, 56)


def url_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


@pytest.mark.parametrize("caller", CALLERS)
def test_allowed_sni_at_stray_address_reset(runtad: RuntadProcess, caller: str) -> None:
    sandbox = enforced_sandbox(runtad, ["pypi.org"])

    results = {
        address: exec_in(runtad, sandbox.name, caller, [
            "curl", "-sS", "-k", "--max-time", "5", "--resolve",
            f"pypi.org:443:{url_host(address)}", "https://pypi.org/",
        ])
        for address in STRAY
    }  # fmt: skip

    assert {address: result.returncode in RESET_CODES for address, result in results.items()} == {
        address: True for address in STRAY
    }
    assert max(result.seconds for result in results.values()) < EXEC_SECONDS / 5
    for address in STRAY:
        event = wait_for_event(runtad, sandbox.name, denial_at(address, 443))
        assert event is not None, f"no deny event for SNI pypi.org at {address}"
        assert event["reason"] == "sni_address_mismatch"
        assert event["host"] == "pypi.org"


@pytest.mark.parametrize("caller", CALLERS)
def test_allowed_host_header_at_stray_address_reset(runtad: RuntadProcess, caller: str) -> None:
    sandbox = enforced_sandbox(runtad, ["pypi.org"])
    request = "GET /simple/ HTTP/1.1\\r\\nHost: pypi.org\\r\\n\\r\\n"

    results = {
        address: probe(runtad, sandbox.name, caller, "tcp", address, "80", request)
        for address in STRAY
    }

    assert {address: result.outcome for address, result in results.items()} == dict.fromkeys(
        STRAY, "ECONNRESET"
    )
    assert max(result.seconds for result in results.values()) < FAST_SECONDS
    for address in STRAY:
        event = wait_for_event(runtad, sandbox.name, denial_at(address, 80))
        assert event is not None, f"no deny event for Host pypi.org at {address}"
        assert event["reason"] == "host_address_mismatch"
        assert event["path"] == "/simple/"


def test_tls_without_sni_reset(runtad: RuntadProcess) -> None:
    sandbox = enforced_sandbox(runtad, ["pypi.org"])

    results = {
        address: exec_in(runtad, sandbox.name, "nobody", [
            "openssl", "s_client", "-connect", f"{url_host(address)}:443", "-noservername",
        ])
        for address in STRAY
    }  # fmt: skip

    for address, result in results.items():
        assert result.returncode != 0, f"TLS without SNI to {address} was not reset"
        assert "no peer certificate available" in result.stdout
    assert max(result.seconds for result in results.values()) < EXEC_SECONDS / 5
    for address in STRAY:
        event = wait_for_event(runtad, sandbox.name, denial_at(address, 443))
        assert event is not None, f"no deny event for TLS without SNI at {address}"
        assert event["reason"] == "sni_missing"


def test_request_without_host_reset(runtad: RuntadProcess) -> None:
    sandbox = enforced_sandbox(runtad, ["pypi.org"])

    result = probe(
        runtad, sandbox.name, "nobody", "tcp", STRAY[0], "80", "GET / HTTP/1.0\\r\\n\\r\\n"
    )

    assert result.outcome == "ECONNRESET"
    assert result.seconds < FAST_SECONDS
    event = wait_for_event(runtad, sandbox.name, denial_at(STRAY[0], 80))
    assert event is not None
    assert event["reason"] == "host_missing"
