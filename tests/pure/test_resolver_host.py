"""resolve_host over real UDP sockets on loopback: both queries sent at once, failover, errors."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

from runtad.resolver import Resolution, resolve_host
from runtad.upstream import Upstream

# Maps a query to the reply to send, or to None to stay silent.
Answerer = Callable[[dns.message.Message], dns.message.Message | None]


class LoopbackServer:
    """A UDP name server on 127.0.0.1 that answers each query with answerer's reply."""

    def __init__(self, answerer: Answerer) -> None:
        self.answerer = answerer
        self.queries: list[tuple[str, str]] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._read)

    def _read(self) -> None:
        data, peer = self.sock.recvfrom(4096)
        query = dns.message.from_wire(data)
        question = query.question[0]
        self.queries.append((question.name.to_text(omit_final_dot=True), dns.rdatatype.to_text(question.rdtype)))
        reply = self.answerer(query)
        if reply is not None:
            self.sock.sendto(reply.to_wire(), peer)

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()


def addresses(query: dns.message.Message) -> dns.message.Message:
    """Answer A with 192.0.2.1 through a CNAME, and AAAA with 2001:db8::1 directly."""
    reply = dns.message.make_response(query)
    question = query.question[0]
    if question.rdtype == dns.rdatatype.A:
        reply.answer.append(dns.rrset.from_text(question.name, 300, "IN", "CNAME", "edge.cdn.test."))
        reply.answer.append(dns.rrset.from_text("edge.cdn.test.", 60, "IN", "A", "192.0.2.1"))
    else:
        reply.answer.append(dns.rrset.from_text(question.name, 120, "IN", "AAAA", "2001:db8::1"))
    return reply


def servfail(query: dns.message.Message) -> dns.message.Message:
    reply = dns.message.make_response(query)
    reply.set_rcode(dns.rcode.SERVFAIL)
    return reply


def silent(query: dns.message.Message) -> None:
    return None


async def resolve_twice(answerers: list[Answerer], host: str, timeout: float = 2.0) -> tuple[list[Resolution], list[LoopbackServer]]:
    """Resolve host twice with one Upstream: first with its socket not yet open, then open."""
    servers = [LoopbackServer(answerer) for answerer in answerers]
    upstream = Upstream.from_texts([server.address for server in servers], timeout)
    try:
        results = [await resolve_host(upstream, host), await resolve_host(upstream, host)]
    finally:
        upstream.close()
        for server in servers:
            server.close()
    return results, servers


def test_resolve_host_follows_chain() -> None:
    (first, second), _ = asyncio.run(resolve_twice([addresses], "pypi.org"))
    assert first == Resolution("pypi.org", (("192.0.2.1", 60), ("2001:db8::1", 120)), None)
    assert second == first


def test_resolve_host_one_query_per_type() -> None:
    _, (server,) = asyncio.run(resolve_twice([addresses], "pypi.org"))
    assert sorted(server.queries) == [("pypi.org", "A"), ("pypi.org", "A"), ("pypi.org", "AAAA"), ("pypi.org", "AAAA")]


def test_resolve_host_servfail_text() -> None:
    (first, second), _ = asyncio.run(resolve_twice([servfail], "pypi.org"))
    assert first.error == "A lookup returned SERVFAIL; AAAA lookup returned SERVFAIL"
    assert second == first


def test_resolve_host_next_server_after_timeout() -> None:
    (first, second), (quiet, answering) = asyncio.run(resolve_twice([silent, addresses], "pypi.org", timeout=0.2))
    assert first.ok
    assert second == first
    assert len(quiet.queries) == 4
    assert len(answering.queries) == 4


def test_resolve_host_timeout_text() -> None:
    (first, second), _ = asyncio.run(resolve_twice([silent], "pypi.org", timeout=0.1))
    assert not first.ok
    assert "TimeoutError" in (first.error or "")
    assert second == first


def test_resolve_host_cancel_frees_ids() -> None:
    async def scenario() -> int:
        server = LoopbackServer(silent)
        upstream = Upstream.from_texts([server.address], 0.2)
        try:
            await resolve_host(upstream, "warm.test")  # opens the socket
            task = asyncio.ensure_future(resolve_host(upstream, "pypi.org"))
            await asyncio.sleep(0.01)
            task.cancel()
            await asyncio.sleep(0.3)  # past the deadline of the cancelled queries
            (channel,) = upstream._channels.values()
            return len(channel.pending)
        finally:
            upstream.close()
            server.close()

    assert asyncio.run(scenario()) == 0
