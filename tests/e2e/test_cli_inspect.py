"""`runta egress inspect` and the text of `runta egress events`, against a real runtad.

The lab serves a second name, other.test, on pypi.org's address 192.0.2.10. With pypi.org
allowed, that address is in the sandbox's kernel set, so only strict inspection keeps a
connection that names other.test from passing.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.e2e.runtad_process import RuntadProcess, SandboxHandle
from tests.lab.topology import Lab

pytestmark = pytest.mark.root

SHARED_ADDRESS = "192.0.2.10"  # pypi.org's address in the lab
SHARED_NAME = "other.test"
# A denied connection ends with a reset at once, never by a client timeout.
FAST_FAILURE_SECONDS = 1.0
EVENT_WAIT_SECONDS = 5.0


@pytest.fixture(scope="module")
def shared_address_lab(internet: Lab) -> Lab:
    internet.add_web_server(SHARED_ADDRESS, [SHARED_NAME])
    return internet


def enforced_sandbox(runtad: RuntadProcess) -> SandboxHandle:
    sandbox = runtad.create_sandbox()
    assert sandbox.post("allow", ["pypi.org"]).status_code == 200
    assert sandbox.post("enable").status_code == 200
    return sandbox


def curl_shared_name(sandbox: SandboxHandle) -> tuple[int, float]:
    """Connect with SNI other.test to pypi.org's address; return curl's exit code and seconds."""
    started = time.monotonic()
    result = sandbox.curl(
        f"https://{SHARED_NAME}/", "--resolve", f"{SHARED_NAME}:443:{SHARED_ADDRESS}"
    )
    return result.returncode, time.monotonic() - started


def wait_for_denial(runtad: RuntadProcess, sandbox: SandboxHandle) -> dict[str, Any]:
    """Return the stored sni_not_allowed event for other.test, waiting at most 5 s."""
    deadline = time.monotonic() + EVENT_WAIT_SECONDS
    while True:
        response = runtad.api("GET", f"/runtimes/{sandbox.name}/egress/events?limit=100")
        assert response.status_code == 200, response.text
        for event in response.json()["items"]:
            if event["reason"] == "sni_not_allowed" and event["host"] == SHARED_NAME:
                found: dict[str, Any] = event
                return found
        if time.monotonic() > deadline:
            raise AssertionError(f"no sni_not_allowed event: {response.json()['items']}")
        time.sleep(0.1)


def test_inspect_all_resets_shared_name(
    runtad: RuntadProcess, shared_address_lab: Lab
) -> None:
    sandbox = enforced_sandbox(runtad)
    assert SHARED_ADDRESS in sandbox.kernel_set()

    set_mode = runtad.cli("egress", "inspect", sandbox.name, "all")
    current = runtad.cli("egress", "inspect", sandbox.name)
    code, seconds = curl_shared_name(sandbox)

    assert set_mode.returncode == 0, set_mode.stderr
    assert set_mode.stdout.startswith(f"{sandbox.name}: inspect all, enforcement on, ")
    assert set_mode.stderr == ""
    assert current.stdout == set_mode.stdout
    assert sandbox.egress()["inspect"] == "all"
    assert code in (35, 56)  # TLS connect error or receive failure: the gateway's reset
    assert seconds < FAST_FAILURE_SECONDS
    assert wait_for_denial(runtad, sandbox)["address"] == SHARED_ADDRESS


def test_inspect_first_lets_shared_name_pass(
    runtad: RuntadProcess, shared_address_lab: Lab
) -> None:
    # The default mode's known limit, which strict mode closes: the address is in the set.
    sandbox = enforced_sandbox(runtad)
    runtad.cli("egress", "inspect", sandbox.name, "all", check=True)

    back = runtad.cli("egress", "inspect", sandbox.name, "first")
    result = sandbox.curl(
        f"https://{SHARED_NAME}/", "--resolve", f"{SHARED_NAME}:443:{SHARED_ADDRESS}"
    )

    assert back.stdout.startswith(f"{sandbox.name}: inspect first, ")
    assert result.stdout == "200", result.stderr


def test_events_text_shows_message(runtad: RuntadProcess, shared_address_lab: Lab) -> None:
    sandbox = enforced_sandbox(runtad)
    runtad.cli("egress", "inspect", sandbox.name, "all", check=True)
    curl_shared_name(sandbox)
    event = wait_for_denial(runtad, sandbox)

    listing = runtad.cli("egress", "events", "--sandbox", sandbox.name, "--limit", "100")

    assert listing.returncode == 0, listing.stderr
    assert event["message"]
    lines = listing.stdout.splitlines()
    rows = [
        index for index, line in enumerate(lines)
        if "sni_not_allowed" in line.split() and SHARED_NAME in line.split()
    ]  # fmt: skip
    assert len(rows) == 1, listing.stdout
    assert lines[rows[0] + 1] == "    " + event["message"]
