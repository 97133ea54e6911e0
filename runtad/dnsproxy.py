"""Per-sandbox DNS listener: answers allowed names only, and fills the sets before it answers.

Its sockets are created inside the sandbox's namespace on 127.0.0.1 and ::1, where the
sandbox's nat rule redirects every UDP and TCP port-53 packet. Queries go upstream from
the daemon's own namespace, outside the sandbox's rules.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import structlog

from . import metrics
from .audit import Action, Reason, Recorder, Source
from .dnsanswer import strip_foreign_addresses
from .dnswire import FLAG_QR, WireError, build_formerr, build_reply, follow_chain, read_question, read_reply
from .dnslimit import QueryLimiter
from .netns import call_in_netns_async
from .upstream import Upstream, UpstreamError

log = structlog.get_logger()

MAX_IN_FLIGHT = 512
# Datagrams read from one listener socket per event-loop turn. Reading several per turn
# lets their answers share one set transaction. The bound keeps the other sockets served.
READ_BATCH = 64
# Largest query read over UDP: the EDNS payload limit, so no query is cut short.
MAX_UDP_QUERY = 65535
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3
TCP_IDLE_SECONDS = 10.0
# A client's socket address as recvfrom returns it: (host, port) or, over IPv6, four fields.
Peer = tuple[Any, ...]
# The protocol field of the proxy's audit events.
AUDIT_PROTOCOL = "dns"
# runtad_dns_queries_total by verdict; "limited" counts as dropped in GET /v1/status.
_VERDICT_COUNTERS = {
    verdict: metrics.DNS_QUERIES.labels(verdict=verdict)
    for verdict in ("forwarded", "denied", "servfail", "dropped")
}


@dataclass(frozen=True)
class Verdict:
    """The policy's decision for one query name."""

    allowed: bool  # forward upstream
    enforced: bool  # enforcement is on
    pattern: str | None  # the rule that matched, if any
    host: str | None  # canonical query name, None when not a valid host name


class SandboxPolicy(Protocol):
    """The sandbox interface the proxy uses: the policy decision and the set updates."""

    name: str

    def judge(self, qname_text: str) -> Verdict: ...

    async def learn_from_dns(self, pattern: str, addresses: list[tuple[str, int]]) -> None: ...

    def is_denied_answer(self, address: str) -> bool: ...


class SetUpdateFailed(Exception):
    """The kernel did not take the answer's addresses; the proxy answers SERVFAIL."""


class DnsProxy:
    def __init__(
        self, sandbox: SandboxPolicy, upstream: Upstream, netns_path: Path, port: int,
        audit: Recorder | None = None, limiter: QueryLimiter | None = None,
    ) -> None:
        self.sandbox = sandbox
        self.audit = audit or Recorder.discarding(sandbox.name)
        self.upstream = upstream
        self.netns_path = netns_path
        self.port = port
        self._listeners: list[_UdpListener] = []
        self._servers: list[asyncio.base_events.Server] = []
        self._in_flight = 0
        self.limiter = limiter or QueryLimiter(rate=0, burst=1, max_pending=0)
        # "limited": queries over the sandbox's DNS limits, answered SERVFAIL and also
        # counted as dropped.
        self.stats = {"forwarded": 0, "denied": 0, "servfail": 0, "dropped": 0, "limited": 0}
        self._log = log.bind(runtime=sandbox.name)

    async def start(self) -> None:
        # Straight to a namespace worker: one thread hand-off, no executor thread waiting.
        sockets = await call_in_netns_async(self.netns_path, self._open_sockets)
        loop = asyncio.get_running_loop()
        for kind, sock in sockets:
            if kind == "udp":
                self._listeners.append(_UdpListener(self, sock, loop))
            else:
                server = await asyncio.start_server(self._serve_tcp, sock=sock)
                self._servers.append(server)

    async def close(self) -> None:
        for listener in self._listeners:
            listener.close()
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        self._listeners.clear()
        self._servers.clear()

    def _open_sockets(self) -> list[tuple[str, socket.socket]]:
        opened: list[tuple[str, socket.socket]] = []
        try:
            for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
                for kind, sock_type in (("udp", socket.SOCK_DGRAM), ("tcp", socket.SOCK_STREAM)):
                    sock = socket.socket(family, sock_type)
                    opened.append((kind, sock))
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    if family == socket.AF_INET6:
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    sock.bind((address, self.port))
                    if kind == "tcp":
                        sock.listen(128)
                    sock.setblocking(False)
        except BaseException:
            for _, sock in opened:
                sock.close()
            raise
        return opened

    async def answer(self, wire: bytes, *, tcp: bool) -> bytes | None:
        """Return the reply for one query, or None to send nothing."""
        try:
            question = read_question(wire)
        except WireError:
            self._count("dropped")
            return build_formerr(wire)
        if question.flags & FLAG_QR:
            self._count("dropped")
            return None
        exceeded = self.limiter.admit()
        if exceeded is not None:
            return self._limited(wire, question, exceeded.value)

        verdict = self.sandbox.judge(question.qname)
        if not verdict.allowed:
            self._count("denied")
            self._log.debug("dns_query_denied", qname=verdict.host or question.qname)
            self.audit.emit(
                Action.DENY, Reason.DNS_NAME_NOT_ALLOWED, Source.DNS,
                host=verdict.host or question.qname, protocol=AUDIT_PROTOCOL,
            )
            return build_reply(wire, question, RCODE_NXDOMAIN)

        exceeded = self.limiter.begin_upstream()
        if exceeded is not None:
            return self._limited(wire, question, exceeded.value)
        try:
            answer_wire = await self.upstream.exchange(wire, tcp=tcp)
        except UpstreamError as error:
            self._count("servfail")
            self._log.warning("dns_upstream_failed", qname=verdict.host, error=str(error))
            self._audit_upstream_failed(verdict, question.qname, str(error))
            return build_reply(wire, question, RCODE_SERVFAIL)
        finally:
            self.limiter.end_upstream()
        self._count("forwarded")
        if verdict.pattern is None:
            # Enforcement is off and no rule names the host: pass the answer through.
            self._audit_unchecked(answer_wire, verdict.host or question.qname)
            return answer_wire

        try:
            chain = follow_chain(read_reply(answer_wire))
        except WireError as error:
            self._count("servfail")
            self._log.warning("dns_upstream_unparsable", qname=verdict.host, error=str(error))
            self._audit_upstream_failed(verdict, question.qname, f"unparsable answer: {error}")
            return build_reply(wire, question, RCODE_SERVFAIL)
        denied = frozenset(address for address, _ in chain.addresses if self.sandbox.is_denied_answer(address))
        for address in sorted(denied):
            self.audit.emit(
                Action.DENY, Reason.ANSWER_ADDRESS_DENIED, Source.DNS, host=verdict.host,
                address=address, protocol=AUDIT_PROTOCOL, rule=verdict.pattern,
            )
        addresses = [(address, ttl) for address, ttl in chain.addresses if address not in denied]
        if addresses:
            try:
                await self.sandbox.learn_from_dns(verdict.pattern, addresses)
            except SetUpdateFailed as error:
                self._count("servfail")
                self._log.error("dns_set_update_failed", qname=verdict.host, error=str(error))
                self.audit.emit(
                    Action.DENY if verdict.enforced else Action.ALLOW, Reason.SET_UPDATE_FAILED,
                    Source.DNS, host=verdict.host, protocol=AUDIT_PROTOCOL, error=str(error),
                )
                if verdict.enforced:
                    return build_reply(wire, question, RCODE_SERVFAIL)
            else:
                self._audit_allowed(verdict, tuple(addresses))
        else:
            self._audit_allowed(verdict, tuple(addresses))
        if chain.has_foreign or denied:
            return strip_foreign_addresses(answer_wire, chain.names, denied)
        return answer_wire

    def _count(self, verdict: str) -> None:
        self.stats[verdict] += 1
        _VERDICT_COUNTERS[verdict].inc()

    def _limited(self, wire: bytes, question: Any, limit: str) -> bytes:
        """Answer SERVFAIL to a query over the sandbox's DNS limits, and count it."""
        self.stats["limited"] += 1
        self._count("dropped")
        if self.stats["limited"] == 1 or self.stats["limited"] % 1000 == 0:
            self._log.warning(
                "dns_queries_limited", limit=limit, limited=self.stats["limited"],
                hint="raise dns_rate, dns_burst or dns_max_pending in runtad.toml if this load is expected",
            )
        return build_reply(wire, question, RCODE_SERVFAIL)

    def _audit_allowed(self, verdict: Verdict, addresses: tuple[tuple[str, int], ...]) -> None:
        if verdict.host is not None:
            self.audit.learn_names(verdict.host, addresses)
        self.audit.emit(
            Action.ALLOW, Reason.DNS_ALLOWED, Source.DNS, host=verdict.host,
            protocol=AUDIT_PROTOCOL, rule=verdict.pattern, answer_size=len(addresses),
        )

    def _audit_upstream_failed(self, verdict: Verdict, qname: str, error: str) -> None:
        self.audit.emit(
            Action.ALLOW, Reason.UPSTREAM_FAILED, Source.DNS, host=verdict.host or qname,
            protocol=AUDIT_PROTOCOL, rule=verdict.pattern, error=error,
        )

    def _audit_unchecked(self, answer_wire: bytes, host: str) -> None:
        """Record an answer passed on with enforcement off, and remember its addresses."""
        try:
            self.audit.learn_names(host, follow_chain(read_reply(answer_wire)).addresses)
        except WireError:
            pass  # the client gets the answer as it came; only the name map misses it
        self.audit.emit(Action.ALLOW, Reason.ENFORCEMENT_DISABLED, Source.DNS, host=host, protocol=AUDIT_PROTOCOL)

    async def _handle_udp(self, listener: _UdpListener, wire: bytes, peer: Peer) -> None:
        try:
            reply = await self.answer(wire, tcp=False)
            if reply is not None:
                listener.send(reply, peer)
        finally:
            self._in_flight -= 1

    def _on_datagram(
        self, listener: _UdpListener, wire: bytes, peer: Peer, loop: asyncio.AbstractEventLoop
    ) -> None:
        if self._in_flight >= MAX_IN_FLIGHT:
            self._count("dropped")
            return
        self._in_flight += 1
        loop.create_task(self._handle_udp(listener, wire, peer))

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                header = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_SECONDS)
                wire = await asyncio.wait_for(
                    reader.readexactly(struct.unpack("!H", header)[0]), TCP_IDLE_SECONDS
                )
                reply = await self.answer(wire, tcp=True)
                if reply is None:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()


class _UdpListener:
    """One UDP listener socket, drained up to READ_BATCH datagrams per readiness event.

    asyncio's datagram transport reads one datagram per event-loop turn. Draining here
    lets the answers of many queries reach the set writer in the same turn.
    """

    def __init__(self, proxy: DnsProxy, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self.proxy = proxy
        self.sock = sock
        self._loop = loop
        loop.add_reader(sock.fileno(), self._read_ready)

    def _read_ready(self) -> None:
        for _ in range(READ_BATCH):
            try:
                wire, peer = self.sock.recvfrom(MAX_UDP_QUERY)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                # The socket stays usable, so the next readiness event reads again.
                self.proxy._log.warning("dns_receive_failed", error=str(error))
                return
            self.proxy._on_datagram(self, wire, peer, self._loop)

    def send(self, reply: bytes, peer: Peer) -> None:
        try:
            self.sock.sendto(reply, peer)
        except (BlockingIOError, InterruptedError):
            # The send buffer is full. The client retries, as it would after a lost packet.
            self.proxy._count("dropped")
        except OSError as error:
            self.proxy._count("dropped")
            self.proxy._log.debug("dns_send_failed", error=str(error))

    def close(self) -> None:
        self._loop.remove_reader(self.sock.fileno())
        self.sock.close()
