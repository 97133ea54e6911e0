"""end_denied_flows against a real conntrack table in a namespace of the test's own."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtad.conntrack import end_denied_flows
from runtad.ctnetlink import ConntrackSocket, FlowTuple
from runtad.netns import call_in_netns

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

TIMEOUT_SECONDS = 120


@pytest.fixture
def netns() -> Iterator[Path]:
    name = f"rt-ct-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=20)
    try:
        yield Path("/run/netns") / name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=20)


def create(netns: Path, flows: list[FlowTuple]) -> int:
    def work() -> int:
        with ConntrackSocket() as conntrack:
            return conntrack.create(flows, TIMEOUT_SECONDS)

    return call_in_netns(netns, work)


def destinations(netns: Path) -> set[str]:
    def work() -> set[str]:
        with ConntrackSocket() as conntrack:
            entries = conntrack.dump()
        found = set()
        for entry in entries:
            assert entry.original_destination is not None
            family = socket.AF_INET6 if len(entry.original_destination) == 16 else socket.AF_INET
            found.add(socket.inet_ntop(family, entry.original_destination))
        return found

    return call_in_netns(netns, work)


def udp(destination: str, port: int = 53) -> FlowTuple:
    source = "fd72:756e:7461::2" if ":" in destination else "10.213.0.2"
    return FlowTuple(source, destination, socket.IPPROTO_UDP, 40000 + port, port)


def test_conntrack_create_and_dump(netns: Path) -> None:
    assert create(netns, [udp("198.51.100.1"), udp("2001:db8::1")]) == 2
    assert destinations(netns) == {"198.51.100.1", "2001:db8::1"}


def test_end_denied_flows_keeps_allowed(netns: Path) -> None:
    create(netns, [udp("198.51.100.1"), udp("198.51.100.2"), udp("2001:db8::1"), udp("2001:db8::2")])
    ended = end_denied_flows(netns, frozenset({"198.51.100.1", "2001:db8::1"}))
    assert ended == 2
    assert destinations(netns) == {"198.51.100.1", "2001:db8::1"}


def test_end_denied_flows_keeps_loopback(netns: Path) -> None:
    create(netns, [FlowTuple("127.0.0.1", "127.0.0.1", socket.IPPROTO_UDP, 40000, 53), udp("203.0.113.9")])
    assert end_denied_flows(netns, frozenset()) == 1
    assert destinations(netns) == {"127.0.0.1"}


def test_end_denied_flows_many(netns: Path) -> None:
    flows = [udp(f"198.51.100.{index % 250 + 1}", 1000 + index) for index in range(3000)]
    assert create(netns, flows) == 3000
    assert end_denied_flows(netns, frozenset({"198.51.100.1"})) == 3000 - 12
    assert destinations(netns) == {"198.51.100.1"}


def test_end_denied_flows_empty_table(netns: Path) -> None:
    assert end_denied_flows(netns, frozenset()) == 0
