"""kill -9 of runtad in the middle of a large policy change.

The change replaces a one-host policy (inspect "first") by 2,000 hosts with inspect
"all", so the gateway chain changes shape and the old host's addresses leave the sets
in the same kernel transaction. Whenever the kill lands, the kernel must hold the old
state or the new one, never a mix and never an open sandbox, and a restart must bring
the kernel to what the store holds.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

import pytest

from tests.e2e.runtad_process import RuntadProcess, SandboxHandle
from tests.hostile.attempts import FAST_SECONDS, nft_table, probe_offline, request_raw, rule_shape

pytestmark = [pytest.mark.root, pytest.mark.slow]

BULK_HOSTS = [f"h{index}.bulk.test" for index in range(2000)]
BULK_POOL = [f"192.0.2.{index}" for index in range(100, 200)]
OLD_ADDRESS = "192.0.2.10"  # pypi.org, the one host of the old policy
# Seconds between sending the PUT and the kill: before the daemon read the body, while
# it parses 2,000 hosts, around the kernel transaction and the store write, and while
# it resolves the new hosts.
KILL_DELAYS = [0.0, 0.03, 0.1, 0.3, 1.0]


def put_in_background(daemon: RuntadProcess, name: str, body: dict[str, Any]) -> threading.Thread:
    thread = threading.Thread(
        target=request_raw, args=(daemon, "PUT", f"/runtimes/{name}/egress", body), daemon=True
    )
    thread.start()
    return thread


def wait_for_address(sandbox: SandboxHandle, address: str, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if address in nft_table(sandbox.netns)["sets"]["allow4"]:
            return True
        time.sleep(0.1)
    return False


def classify(sandbox: SandboxHandle, old: dict[str, list[str]], new: dict[str, list[str]]) -> str:
    """Return "old" or "new" for the sandbox's kernel state; fail on anything else."""
    shape = rule_shape(sandbox.netns)
    allow4 = set(nft_table(sandbox.netns)["sets"]["allow4"])
    assert shape in (old, new), f"the chains match neither policy: {shape}"
    if shape == old:
        assert OLD_ADDRESS in allow4, "old chains without the old host's address"
        assert not allow4 & set(BULK_POOL), "old chains with addresses of the new hosts"
        return "old"
    assert OLD_ADDRESS not in allow4, "new chains still allow the removed host's address"
    return "new"


@pytest.mark.parametrize("delay", KILL_DELAYS)
def test_kill_during_large_change(own_runtad: RuntadProcess, delay: float) -> None:
    lab = own_runtad.lab
    lab.dns.set_rotation("*.bulk.test", BULK_POOL, per_answer=2, ttl=300)
    sandbox = own_runtad.create_sandbox()
    reference = own_runtad.create_sandbox()
    old_body = {"enabled": True, "inspect": "first", "allowed_hosts": ["pypi.org"]}
    new_body = {"enabled": True, "inspect": "all", "allowed_hosts": BULK_HOSTS}
    assert own_runtad.api("PUT", f"/runtimes/{sandbox.name}/egress", old_body).status_code == 200
    assert own_runtad.api("PUT", f"/runtimes/{reference.name}/egress", {
        "enabled": True, "inspect": "all", "allowed_hosts": [],
    }).status_code == 200  # fmt: skip
    assert wait_for_address(sandbox, OLD_ADDRESS)
    old_shape = rule_shape(sandbox.netns)
    new_shape = rule_shape(reference.netns)
    assert old_shape != new_shape

    sender = put_in_background(own_runtad, sandbox.name, new_body)
    time.sleep(delay)
    own_runtad.kill9()
    sender.join(timeout=30)
    killed_state = classify(sandbox, old_shape, new_shape)
    denied = probe_offline(sandbox, "nobody", "tcp", "198.51.100.7", "8080")
    denied_web = probe_offline(sandbox, "nobody", "tcp", "198.51.100.7", "80")

    own_runtad.start()
    stored = sandbox.egress()
    stored_state = "new" if stored["inspect"] == "all" else "old"
    wait_for_address(sandbox, OLD_ADDRESS, seconds=3.0 if stored_state == "old" else 0.0)
    restarted_state = classify(sandbox, old_shape, new_shape)

    print(
        f"measured: kill after {delay:.2f} s left the kernel {killed_state}, the store {stored_state}"
    )
    assert denied.outcome == "ECONNREFUSED"
    assert denied.seconds < FAST_SECONDS
    assert (
        denied_web.outcome == "ECONNREFUSED"
    )  # redirected to a gateway port that no process serves
    assert stored["enabled"] is True
    assert stored["allowed_hosts"] == (BULK_HOSTS if stored_state == "new" else ["pypi.org"])
    assert restarted_state == stored_state


def test_kill_between_kernel_and_store(own_runtad: RuntadProcess) -> None:
    sandbox = own_runtad.create_sandbox()
    reference = own_runtad.create_sandbox()
    old_body = {"enabled": True, "inspect": "first", "allowed_hosts": ["pypi.org"]}
    assert own_runtad.api("PUT", f"/runtimes/{sandbox.name}/egress", old_body).status_code == 200
    assert own_runtad.api("PUT", f"/runtimes/{reference.name}/egress", {
        "enabled": True, "inspect": "all", "allowed_hosts": [],
    }).status_code == 200  # fmt: skip
    assert wait_for_address(sandbox, OLD_ADDRESS)
    old_shape = rule_shape(sandbox.netns)
    new_shape = rule_shape(reference.netns)
    # The store write waits for the lock (busy_timeout 2 s) after the kernel transaction.
    lock = sqlite3.connect(own_runtad.state_dir / "runtad.db", isolation_level=None)
    try:
        lock.execute("BEGIN EXCLUSIVE")
        sender = put_in_background(own_runtad, sandbox.name, {
            "enabled": True, "inspect": "all", "allowed_hosts": ["files.pythonhosted.org"],
        })  # fmt: skip
        time.sleep(1.0)
        own_runtad.kill9()
        sender.join(timeout=30)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    killed_state = classify(sandbox, old_shape, new_shape)

    own_runtad.start()
    stored = sandbox.egress()
    wait_for_address(sandbox, OLD_ADDRESS)
    restarted_state = classify(sandbox, old_shape, new_shape)

    assert killed_state == "new"
    assert stored["allowed_hosts"] == ["pypi.org"]
    assert stored["inspect"] == "first"
    assert restarted_state == "old"
