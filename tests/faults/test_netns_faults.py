"""Sandbox namespaces that disappear behind runtad's back.

- A created sandbox's namespace deleted with `ip netns del` while runtad runs: the
  namespace lives on while something holds it, and runtad must not lose enforcement of
  it nor keep serving a sandbox that no longer has a name.
- An adopted namespace whose processes are gone: it must show as failed after a restart.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.e2e.runtad_process import RuntadProcess
from tests.hostile.attempts import (
    FAST_SECONDS,
    PROBE_SOURCE,
    PROBE_TIMEOUT,
    SYSTEM_PYTHON,
    enforced_sandbox,
    rule_shape,
)

pytestmark = [pytest.mark.root, pytest.mark.slow]

HOLD_SECONDS = 60


@pytest.fixture
def namespace_holder() -> Iterator[subprocess.Popen[bytes]]:
    """A process of the test's own in a fresh network namespace, ended at the end by pid."""
    process = subprocess.Popen(["unshare", "--net", "sleep", str(HOLD_SECONDS)])
    own = os.stat("/proc/self/ns/net").st_ino
    deadline = time.monotonic() + 5
    while os.stat(f"/proc/{process.pid}/ns/net").st_ino == own:
        assert time.monotonic() < deadline, "unshare did not enter a new network namespace"
        time.sleep(0.02)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=5)


def wait_until_in_netns(pid: int, netns_path: str) -> None:
    """Wait until pid has entered the namespace at netns_path (it starts outside it)."""
    wanted = os.stat(netns_path).st_ino
    deadline = time.monotonic() + 5
    while os.stat(f"/proc/{pid}/ns/net").st_ino != wanted:
        assert time.monotonic() < deadline, f"process {pid} did not enter {netns_path}"
        time.sleep(0.02)


def probe_in_process_netns(pid: int, address: str, port: str) -> dict:  # type: ignore[type-arg]
    """Run the probe in the network namespace of pid, as nobody."""
    completed = subprocess.run(
        ["nsenter", f"--net=/proc/{pid}/ns/net", "setpriv", "--reuid=nobody", "--regid=nogroup",
         "--clear-groups", SYSTEM_PYTHON, "-c", PROBE_SOURCE, str(PROBE_TIMEOUT), "tcp", address, port],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    result: dict = json.loads(completed.stdout.strip().splitlines()[-1])  # type: ignore[type-arg]
    return result


def test_deleted_netns_recreated_on_restart(own_runtad: RuntadProcess) -> None:
    sandbox = enforced_sandbox(own_runtad, ["pypi.org"])
    shape = rule_shape(sandbox.netns)
    subprocess.run(["ip", "netns", "del", sandbox.netns], check=True, timeout=10)
    while_running = own_runtad.api("GET", f"/runtimes/{sandbox.name}")
    write_while_running = sandbox.post("allow", ["files.pythonhosted.org"])

    own_runtad.restart()

    recreated = [e for e in own_runtad.log_events() if e.get("event") == "sandbox_netns_recreated"]
    print(
        f"measured: after ip netns del, GET runtime {while_running.status_code}"
        f" ({while_running.json().get('state')}), allow {write_while_running.status_code}"
    )
    assert recreated, "runtad did not log that it recreated the namespace"
    assert rule_shape(sandbox.netns) == shape
    assert sandbox.egress()["enabled"] is True
    assert sandbox.curl("https://pypi.org/").stdout == "200"
    assert sandbox.curl("https://example.com/").returncode == 6


def test_deleted_netns_process_stays_enforced(own_runtad: RuntadProcess) -> None:
    sandbox = enforced_sandbox(own_runtad, ["pypi.org"])
    resident = sandbox.popen(["sleep", str(HOLD_SECONDS)])
    wait_until_in_netns(resident.pid, sandbox.netns_path)
    try:
        subprocess.run(["ip", "netns", "del", sandbox.netns], check=True, timeout=10)
        own_runtad.restart()
        table = subprocess.run(
            ["nsenter", f"--net=/proc/{resident.pid}/ns/net", "nft", "list", "table", "inet", "runta"],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
        denied = probe_in_process_netns(resident.pid, "198.51.100.7", "8080")
        allowed_before = probe_in_process_netns(resident.pid, "192.0.2.10", "80")
    finally:
        resident.kill()
        resident.wait(timeout=5)

    print(f"measured: orphaned namespace after restart: denied {denied}, allowed {allowed_before}")
    # The orphaned namespace keeps its table; its uplink went with the old veth pair.
    assert "goto deny" in table.stdout
    assert denied["outcome"] in ("ECONNREFUSED", "ENETUNREACH")
    assert denied["seconds"] < FAST_SECONDS
    assert allowed_before["outcome"] != "answered"


def test_adopted_netns_process_gone_shows_failed(
    own_runtad: RuntadProcess, namespace_holder: subprocess.Popen[bytes]
) -> None:
    path = f"/proc/{namespace_holder.pid}/ns/net"
    created = own_runtad.api("POST", "/runtimes", {"name": "held1", "netns": path})
    assert created.status_code == 201, created.text
    own_runtad.sandboxes.add("held1")
    assert own_runtad.api("POST", "/runtimes/held1/egress/enable").status_code == 200

    namespace_holder.kill()
    namespace_holder.wait(timeout=5)
    while_running = own_runtad.api("GET", "/runtimes/held1").json()
    own_runtad.restart()
    listed = {item["name"]: item for item in own_runtad.api("GET", "/runtimes").json()["items"]}
    refused = own_runtad.api("POST", "/runtimes/held1/egress/disable")
    deleted = own_runtad.api("DELETE", "/runtimes/held1")

    print(f"measured: adopted namespace gone, before restart state {while_running['state']}")
    assert listed["held1"]["state"] == "failed"
    assert path in listed["held1"]["error"]
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "sandbox_unavailable"
    assert deleted.status_code == 204
