"""A policy write of 10,000 exact hosts: the kernel contains every address when the call returns."""

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import nftsets
from tests.e2e.runtad_process import RuntadProcess
from tests.lab.files import write_atomically
from tests.lab.topology import Lab

pytestmark = [pytest.mark.root, pytest.mark.slow]

HOSTS = 10_000
DOMAIN = "large.policy.test"
ADDRESS_BASE = int(ipaddress.IPv6Address("2001:db8:b::"))
# The lab's Python DNS server answers a few thousand queries a second, so 20,000 queries
# take several seconds: wait for all of them instead of the default 3 s.
RESOLVE_WAIT_SECONDS = 60.0


@pytest.fixture
def large_lab(tmp_path: Path) -> Iterator[tuple[RuntadProcess, dict[str, str]]]:
    if os.geteuid() != 0:
        pytest.skip("end-to-end tests need root for network namespaces and nftables")
    records = {f"h{index}.{DOMAIN}": str(ipaddress.IPv6Address(ADDRESS_BASE + index + 1)) for index in range(HOSTS)}
    with Lab() as world:
        for name, address in records.items():
            world.dns.document.set_records(name, "AAAA", [address], 300)
        write_atomically(world.dns.zone_path, world.dns.document.to_json())
        daemon = RuntadProcess(world, tmp_path, resolve_wait=RESOLVE_WAIT_SECONDS)
        daemon.start()
        try:
            yield daemon, records
        finally:
            daemon.close()


def test_policy_large_held_at_return(large_lab: tuple[RuntadProcess, dict[str, str]]) -> None:
    daemon, records = large_lab
    sandbox = daemon.create_sandbox()
    assert sandbox.post("enable").status_code == 200

    started = time.perf_counter()
    response = sandbox.post("allow", list(records))
    elapsed = time.perf_counter() - started

    assert response.status_code == 200, response.text
    held = nftsets.set_elements(sandbox.netns, "runta", "allow6")
    missing = set(records.values()) - held
    assert not missing, f"{len(missing)} of {HOSTS} addresses missing {elapsed:.2f} s after the call started"
    entries = response.json()["entries"]
    assert sum(entry["status"] == "resolved" for entry in entries) == HOSTS
