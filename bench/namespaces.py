"""Namespaces the benchmarks create besides the lab's: named rtb-*, owned, and always removed.

Each is registered with the lab's owner records before it exists, so cleanup of a
crashed run (cleanup_stale_bench_netns, run at the start of every suite) removes only
namespaces whose process is gone, never those of a run in progress.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from tests.lab.netns import IP, add_netns, delete_netns, run_checked
from tests.lab.stale import cleanup_stale, record_owner, remove_owner

BENCH_PREFIX = "rtb-"


def cleanup_stale_bench_netns() -> list[str]:
    return cleanup_stale(prefix=BENCH_PREFIX)


@contextmanager
def bench_netns(role: str) -> Iterator[str]:
    """Create a namespace with loopback up, yield its name, delete it on exit."""
    name = f"{BENCH_PREFIX}{secrets.token_hex(3)}-{role}"
    record_owner(name)
    try:
        add_netns(name)
        run_checked([IP, "-n", name, "link", "set", "lo", "up"])
        yield name
    finally:
        delete_netns(name)
        remove_owner(name)


def link_netns(
    netns: str, device: str, address: str, peer_netns: str, peer_device: str, peer_address: str
) -> None:
    """Join two namespaces with a veth pair and give each end an address (with its prefix length)."""
    run_checked([IP, "-n", netns, "link", "add", device, "type", "veth", "peer", "name", peer_device, "netns", peer_netns])
    for space, name, value in ((netns, device, address), (peer_netns, peer_device, peer_address)):
        run_checked([IP, "-n", space, "addr", "add", value, "dev", name])
        run_checked([IP, "-n", space, "link", "set", name, "up"])
