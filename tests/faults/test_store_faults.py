"""The state database full, locked or corrupt.

runtad must keep enforcing what the kernel holds, refuse writes with 503
store_unavailable, log the failure, and lose no policy it acknowledged.

- Full: the state directory is a 4 MiB tmpfs that the test fills with a file.
- Locked: the test holds an exclusive SQLite transaction on runtad.db.
- Corrupt: the test overwrites runtad.db with random bytes while runtad is stopped.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.runtad_process import RuntadProcess, SandboxHandle
from tests.hostile.attempts import (
    FAST_SECONDS,
    enforced_sandbox,
    nft_table,
    probe_offline,
    rule_shape,
)
from tests.lab.topology import Lab

pytestmark = pytest.mark.root

# SQLite's busy_timeout in runtad's store: a locked write fails after this many seconds.
BUSY_SECONDS = 2.0
TMPFS_SIZE = "4m"


def fill_disk(directory: Path) -> Path:
    """Write zeros to a file in directory until the file system is full; return the file."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as stream:
        for chunk in (65536, 512):
            try:
                # One write per chunk, so the loop stops at the first ENOSPC; 4 GiB at most.
                for _ in range(1 << 16):  # noqa: FURB122
                    stream.write(b"\0" * chunk)
            except OSError:
                continue
    return filler


@pytest.fixture
def tmpfs_runtad(internet: Lab, tmp_path: Path) -> Iterator[RuntadProcess]:
    """A daemon whose state directory is a small tmpfs of the test's own."""
    state = tmp_path / "state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(state)],
                   check=True, timeout=10)  # fmt: skip
    daemon = RuntadProcess(internet, tmp_path)
    try:
        daemon.start()
        yield daemon
    finally:
        (state / "filler").unlink(missing_ok=True)
        daemon.close()
        subprocess.run(["umount", str(state)], check=True, timeout=10)


@pytest.fixture
def locked_store(runtad: RuntadProcess) -> Iterator[sqlite3.Connection]:
    """An exclusive transaction on the module daemon's runtad.db, rolled back at the end."""
    connection = sqlite3.connect(runtad.state_dir / "runtad.db", isolation_level=None)
    try:
        yield connection
    finally:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        connection.close()


def allow4(sandbox: SandboxHandle) -> list[str]:
    return list(nft_table(sandbox.netns)["sets"]["allow4"])


def error_code(response_json: dict) -> str:  # type: ignore[type-arg]
    return str(response_json["error"]["code"])


# --- disk full ----------------------------------------------------------------------


def test_disk_full_write_rejected(tmpfs_runtad: RuntadProcess) -> None:
    sandbox = enforced_sandbox(tmpfs_runtad, ["pypi.org"])
    shape = rule_shape(sandbox.netns)
    fill_disk(tmpfs_runtad.state_dir)

    response = sandbox.post("allow", ["files.pythonhosted.org"])

    assert response.status_code == 503
    assert error_code(response.json()) == "store_unavailable"
    assert str(tmpfs_runtad.state_dir / "runtad.db") in response.json()["error"]["message"]
    assert sandbox.egress()["allowed_hosts"] == ["pypi.org"]
    assert rule_shape(sandbox.netns) == shape
    logged = [e for e in tmpfs_runtad.log_events() if e.get("code") == "store_unavailable"]
    assert logged, "the refused write was not logged"


def test_disk_full_keeps_enforcing(tmpfs_runtad: RuntadProcess) -> None:
    sandbox = enforced_sandbox(tmpfs_runtad, ["pypi.org"])
    fill_disk(tmpfs_runtad.state_dir)

    allowed = sandbox.curl("https://pypi.org/")
    denied = probe_offline(sandbox, "nobody", "tcp", "198.51.100.7", "8080")
    denied_name = sandbox.curl("https://example.com/")

    assert allowed.stdout == "200", allowed.stderr
    assert denied.outcome == "ECONNREFUSED"
    assert denied.seconds < FAST_SECONDS
    assert denied_name.returncode == 6  # could not resolve: NXDOMAIN


def test_disk_full_audit_failure_logged(tmpfs_runtad: RuntadProcess) -> None:
    sandbox = enforced_sandbox(tmpfs_runtad, ["pypi.org"])
    fill_disk(tmpfs_runtad.state_dir)

    sandbox.curl("https://example.com/")
    deadline = time.monotonic() + 8
    failures: list[dict] = []  # type: ignore[type-arg]
    while not failures and time.monotonic() < deadline:
        time.sleep(0.5)
        failures = [e for e in tmpfs_runtad.log_events() if e.get("event") == "audit_write_failed"]

    assert failures, "the failed audit write was not logged"


def test_disk_full_create_leaves_nothing(tmpfs_runtad: RuntadProcess) -> None:
    fill_disk(tmpfs_runtad.state_dir)

    response = tmpfs_runtad.api("POST", "/runtimes", {"name": "full1"})

    assert response.status_code == 503
    assert error_code(response.json()) == "store_unavailable"
    assert not Path("/run/netns", f"{tmpfs_runtad.netns_prefix}full1").exists()
    listed = [item["name"] for item in tmpfs_runtad.api("GET", "/runtimes").json()["items"]]
    assert "full1" not in listed


def test_disk_full_loses_no_acknowledged_policy(tmpfs_runtad: RuntadProcess) -> None:
    sandbox = enforced_sandbox(tmpfs_runtad, ["pypi.org"])
    filler = fill_disk(tmpfs_runtad.state_dir)
    refused = [sandbox.post("allow", [f"f{index}.pythonhosted.org"]) for index in range(3)]

    filler.unlink()
    after = sandbox.post("allow", ["files.pythonhosted.org"])
    tmpfs_runtad.restart()

    assert [response.status_code for response in refused] == [503, 503, 503]
    assert after.status_code == 200
    policy = sandbox.egress()
    assert policy["enabled"] is True
    assert policy["allowed_hosts"] == ["pypi.org", "files.pythonhosted.org"]


def test_disk_full_remove_keeps_kernel_set(tmpfs_runtad: RuntadProcess) -> None:
    sandbox = enforced_sandbox(tmpfs_runtad, ["pypi.org"])
    fill_disk(tmpfs_runtad.state_dir)

    response = sandbox.post("remove", ["pypi.org"])

    assert response.status_code == 503
    assert "192.0.2.10" in allow4(sandbox)


# --- locked -------------------------------------------------------------------------


def test_locked_write_rejected(runtad: RuntadProcess, locked_store: sqlite3.Connection) -> None:
    sandbox = enforced_sandbox(runtad, ["pypi.org"])
    locked_store.execute("BEGIN EXCLUSIVE")
    started = time.monotonic()

    response = sandbox.post("allow", ["files.pythonhosted.org"])
    seconds = time.monotonic() - started

    print(f"measured: locked store, 503 after {seconds:.2f} s")
    assert response.status_code == 503
    assert error_code(response.json()) == "store_unavailable"
    assert "locked" in response.json()["error"]["message"]
    assert seconds < BUSY_SECONDS + 1.0
    assert sandbox.egress()["allowed_hosts"] == ["pypi.org"]


def test_locked_enable_reverted(runtad: RuntadProcess, locked_store: sqlite3.Connection) -> None:
    sandbox = runtad.create_sandbox()
    assert sandbox.post("allow", ["pypi.org"]).status_code == 200
    open_shape = rule_shape(sandbox.netns)
    locked_store.execute("BEGIN EXCLUSIVE")

    response = sandbox.post("enable")

    assert response.status_code == 503
    assert sandbox.egress()["enabled"] is False
    assert rule_shape(sandbox.netns) == open_shape


def test_locked_disable_reverted(runtad: RuntadProcess, locked_store: sqlite3.Connection) -> None:
    sandbox = enforced_sandbox(runtad, ["pypi.org"])
    enforced_shape = rule_shape(sandbox.netns)
    locked_store.execute("BEGIN EXCLUSIVE")

    response = sandbox.post("disable")
    denied = probe_offline(sandbox, "nobody", "tcp", "198.51.100.7", "8080")

    assert response.status_code == 503
    assert rule_shape(sandbox.netns) == enforced_shape
    assert denied.outcome == "ECONNREFUSED"


def test_locked_remove_keeps_kernel_set(
    runtad: RuntadProcess, locked_store: sqlite3.Connection
) -> None:
    sandbox = enforced_sandbox(runtad, ["pypi.org", "files.pythonhosted.org"])
    locked_store.execute("BEGIN EXCLUSIVE")

    response = sandbox.post("remove", ["files.pythonhosted.org"])

    assert response.status_code == 503
    assert "192.0.2.11" in allow4(sandbox)


def test_locked_dns_still_served(runtad: RuntadProcess, locked_store: sqlite3.Connection) -> None:
    sandbox = enforced_sandbox(runtad, ["*.pythonhosted.org"])
    locked_store.execute("BEGIN EXCLUSIVE")

    allowed = sandbox.curl("https://a.b.c.pythonhosted.org/")
    denied = sandbox.curl("https://example.com/")

    assert allowed.stdout == "200", allowed.stderr
    assert denied.returncode == 6


def test_locked_release_recovers(runtad: RuntadProcess, locked_store: sqlite3.Connection) -> None:
    sandbox = enforced_sandbox(runtad, ["pypi.org"])
    locked_store.execute("BEGIN EXCLUSIVE")
    refused = sandbox.post("allow", ["files.pythonhosted.org"])

    locked_store.execute("ROLLBACK")
    accepted = sandbox.post("allow", ["files.pythonhosted.org"])

    assert refused.status_code == 503
    assert accepted.status_code == 200
    assert sandbox.egress()["allowed_hosts"] == ["pypi.org", "files.pythonhosted.org"]


def test_start_while_locked(own_runtad: RuntadProcess) -> None:
    sandbox = enforced_sandbox(own_runtad, ["pypi.org"])
    own_runtad.stop()
    lock = sqlite3.connect(own_runtad.state_dir / "runtad.db", isolation_level=None)
    try:
        lock.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        own_runtad.start()
        seconds = time.monotonic() - started
        refused = sandbox.post("allow", ["files.pythonhosted.org"])
        policy = sandbox.egress()
    finally:
        lock.execute("ROLLBACK")
        lock.close()

    print(f"measured: start with the store locked took {seconds:.2f} s")
    assert policy["allowed_hosts"] == ["pypi.org"]
    assert policy["enabled"] is True
    assert refused.status_code == 503
    assert sandbox.curl("https://pypi.org/").stdout == "200"


# --- corrupt ------------------------------------------------------------------------


def corrupt_store(daemon: RuntadProcess) -> None:
    daemon.stop()
    database = daemon.state_dir / "runtad.db"
    for leftover in daemon.state_dir.glob("runtad.db-*"):
        leftover.unlink()
    database.write_bytes(os.urandom(max(4096, database.stat().st_size)))


def test_corrupt_store_keeps_kernel_enforcing(own_runtad: RuntadProcess) -> None:
    sandbox = enforced_sandbox(own_runtad, ["pypi.org"])
    shape = rule_shape(sandbox.netns)
    corrupt_store(own_runtad)

    with pytest.raises(RuntimeError, match="runtad exited"):
        own_runtad.start()
    denied = probe_offline(sandbox, "nobody", "tcp", "198.51.100.7", "8080")
    started = time.monotonic()
    lookup = sandbox.run(["dig", "+time=2", "+tries=1", "pypi.org"])
    lookup_seconds = time.monotonic() - started

    assert rule_shape(sandbox.netns) == shape
    assert denied.outcome == "ECONNREFUSED"
    assert denied.seconds < FAST_SECONDS
    assert "192.0.2.10" not in lookup.stdout  # no DNS listener: the query fails, fast
    assert lookup_seconds < 2.5


def test_corrupt_store_error_names_file(own_runtad: RuntadProcess) -> None:
    enforced_sandbox(own_runtad, ["pypi.org"])
    corrupt_store(own_runtad)

    with pytest.raises(RuntimeError, match="runtad exited"):
        own_runtad.start()

    last = own_runtad.log_text().strip().splitlines()[-1]
    assert last.startswith("{"), f"the last log line is not a structured event: {last}"
    assert "runtad_failed" in last
    assert str(own_runtad.state_dir / "runtad.db") in last
