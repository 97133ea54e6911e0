"""Single DNS queries from inside a namespace: readiness checks and round-trip times."""

from __future__ import annotations

import socket
import time

import dns.message
import dns.rdatatype

from tests.lab.netns import socket_in_netns


class DnsNotAnsweringError(Exception):
    """A name server did not answer a query within the time allowed."""

    def __init__(self, netns: str, server: str, name: str, timeout: float) -> None:
        super().__init__(
            f"no answer from {server} for {name} within {timeout:.0f} s, queried from namespace {netns}:"
            " check that the server runs and listens there"
        )
        self.netns = netns
        self.server = server
        self.name = name


def _open(netns: str, server: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    return socket_in_netns(netns, family, socket.SOCK_DGRAM)


def query_times(netns: str, server: str, names: list[str], rtype: str = "A", timeout: float = 1.0) -> list[float]:
    """Send one query per name, one at a time, and return each round trip in seconds.

    A query without an answer in timeout seconds is left out of the result.
    """
    rdtype = dns.rdatatype.from_text(rtype)
    times = []
    with _open(netns, server) as sock:
        sock.settimeout(timeout)
        sock.connect((server, 53))
        for name in names:
            wire = dns.message.make_query(name, rdtype).to_wire()
            started = time.perf_counter()
            sock.send(wire)
            try:
                while True:
                    reply = sock.recv(4096)
                    if reply[:2] == wire[:2]:
                        break
            except OSError:
                continue
            times.append(time.perf_counter() - started)
    return times


def wait_answering(netns: str, server: str, name: str, timeout: float = 10.0) -> None:
    """Poll until server replies to a query for name from netns; raise DnsNotAnsweringError after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if query_times(netns, server, [name], timeout=0.2):
            return
        time.sleep(0.05)
    raise DnsNotAnsweringError(netns, server, name, timeout)
