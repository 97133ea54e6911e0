"""Scale: 500 sandboxes with 100 allowed hosts each, created, enforced, restarted, deleted.

Prints the time of each phase, runtad's resident memory (VmRSS) and open descriptors
after each, and UDP receive-buffer drops in the lab, as one "measured:" line (run
pytest with -rP to see it).
"""

from __future__ import annotations

import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e import runtad_process
from tests.e2e.runtad_process import RuntadProcess
from tests.hostile.attempts import nft_table, probe

pytestmark = [pytest.mark.root, pytest.mark.slow]

SANDBOXES = 500
HOSTS_PER_SANDBOX = 100
HOSTS = [f"h{index}.scale.test" for index in range(HOSTS_PER_SANDBOX)]
POOL = [f"192.0.2.{index}" for index in range(150, 200)]
# API calls in flight at once, as an orchestrator starting many sandboxes would have.
CLIENTS = 8
RESTART_TIMEOUT = 120.0


def resident_kib(daemon: RuntadProcess) -> int:
    assert daemon.process is not None
    for line in Path(f"/proc/{daemon.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS line in /proc/PID/status")


def open_descriptors(daemon: RuntadProcess) -> int:
    assert daemon.process is not None
    return len(list(Path(f"/proc/{daemon.process.pid}/fd").iterdir()))


def udp_receive_drops(netns: str) -> int:
    """Return the RcvbufErrors count of UDP in a namespace (/proc/net/snmp)."""
    completed = subprocess.run(
        ["ip", "netns", "exec", netns, "cat", "/proc/net/snmp"],
        capture_output=True, text=True, timeout=10, check=True,
    )  # fmt: skip
    header, values = [
        line.split() for line in completed.stdout.splitlines() if line.startswith("Udp:")
    ][:2]
    return int(values[header.index("RcvbufErrors")])


def create_enforced(daemon: RuntadProcess, name: str) -> tuple[int, int]:
    created = daemon.api("POST", "/runtimes", {"name": name})
    policy = daemon.api(
        "PUT", f"/runtimes/{name}/egress", {"enabled": True, "allowed_hosts": HOSTS}
    )
    return created.status_code, policy.status_code


def test_scale_500_sandboxes(own_runtad: RuntadProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    lab = own_runtad.lab
    lab.dns.set_rotation("*.scale.test", POOL, per_answer=1, ttl=300)
    names = [f"s{index:03d}" for index in range(SANDBOXES)]
    rss_start = resident_kib(own_runtad)
    drops_before = (udp_receive_drops(lab.host_netns), udp_receive_drops(lab.inet_netns))

    started = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as pool:
        statuses = list(pool.map(lambda name: create_enforced(own_runtad, name), names))
    own_runtad.sandboxes.update(names)
    create_seconds = time.monotonic() - started
    rss_enforced, fds_enforced = resident_kib(own_runtad), open_descriptors(own_runtad)
    unresolved = sum(
        1 for entry in own_runtad.api("GET", f"/runtimes/{names[-1]}/egress").json()["entries"]
        if entry["status"] == "unresolved"
    )  # fmt: skip
    drops_after = (udp_receive_drops(lab.host_netns), udp_receive_drops(lab.inet_netns))

    monkeypatch.setattr(runtad_process, "START_TIMEOUT", RESTART_TIMEOUT)
    own_runtad.stop()
    started = time.monotonic()
    own_runtad.start()
    restart_seconds = time.monotonic() - started
    rss_restarted = resident_kib(own_runtad)
    listed = own_runtad.api("GET", "/runtimes").json()["items"]
    last = own_runtad.api("GET", f"/runtimes/{names[-1]}").json()
    last_table = nft_table(Path(last["netns"]).name)
    denied = probe(own_runtad, names[-1], "nobody", "tcp", "198.51.100.7", "8080")

    started = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as pool:
        deleted = list(pool.map(lambda name: own_runtad.api("DELETE", f"/runtimes/{name}"), names))
    own_runtad.sandboxes.difference_update(names)
    delete_seconds = time.monotonic() - started
    rss_deleted = resident_kib(own_runtad)
    leftovers = list(Path("/run/netns").glob(f"{own_runtad.netns_prefix}*"))

    print(
        f"measured: {SANDBOXES} sandboxes x {HOSTS_PER_SANDBOX} hosts: create+enforce"
        f" {create_seconds:.1f} s, restart {restart_seconds:.1f} s, delete {delete_seconds:.1f} s;"
        f" VmRSS start {rss_start // 1024} MiB, enforced {rss_enforced // 1024} MiB,"
        f" restarted {rss_restarted // 1024} MiB, deleted {rss_deleted // 1024} MiB;"
        f" {fds_enforced} open descriptors; last sandbox {unresolved} of"
        f" {HOSTS_PER_SANDBOX} hosts unresolved after its PUT; UDP receive-buffer drops"
        f" host {drops_after[0] - drops_before[0]}, lab DNS {drops_after[1] - drops_before[1]}"
    )
    assert statuses == [(201, 200)] * SANDBOXES
    assert len(listed) == SANDBOXES
    assert {item["state"] for item in listed} == {"running"}
    assert "goto" in str(last_table["rules"]["output"])
    assert last_table["sets"]["allow4"], "the last sandbox's set is empty after the restart"
    assert denied.outcome == "ECONNREFUSED"
    assert [response.status_code for response in deleted] == [204] * SANDBOXES
    assert leftovers == []
