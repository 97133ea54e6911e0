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
from typing import Protocol

import structlog

from .audit import Action, Reason, Recorder, Source
from .dnsanswer import strip_foreign_addresses
from .dnswire import FLAG_QR, WireError, build_formerr, build_reply, follow_chain, read_question, read_reply
from .netns import call_in_netns
from .upstream import Upstream, UpstreamError

log = structlog.get_logger()

MAX_IN_FLIGHT = 512
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3
TCP_IDLE_SECONDS = 10.0
# The protocol field of the proxy's audit events.
AUDIT_PROTOCOL = "dns"


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
        audit: Recorder | None = None,
    ) -> None:
        self.sandbox = sandbox
        self.audit = audit or Recorder.discarding(sandbox.name)
        self.upstream = upstream
        self.netns_path = netns_path
        self.port = port
        self._transports: list[asyncio.BaseTransport] = []
        self._servers: list[asyncio.base_events.Server] = []
        self._in_flight = 0
        self.stats = {"forwarded": 0, "denied": 0, "servfail": 0, "dropped": 0}
        self._log = log.bind(runtime=sandbox.name)

    async def start(self) -> None:
        sockets = await asyncio.to_thread(call_in_netns, self.netns_path, self._open_sockets)
        loop = asyncio.get_running_loop()
        for kind, sock in sockets:
            if kind == "udp":
                transport, _ = await loop.create_datagram_endpoint(lambda: _UdpProtocol(self), sock=sock)
                self._transports.append(transport)
            else:
                server = await asyncio.start_server(self._serve_tcp, sock=sock)
                self._servers.append(server)

    async def close(self) -> None:
        for transport in self._transports:
            transport.close()
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        self._transports.clear()
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
            self.stats["dropped"] += 1
            return build_formerr(wire)
        if question.flags & FLAG_QR:
            self.stats["dropped"] += 1
            return None

        verdict = self.sandbox.judge(question.qname)
        if not verdict.allowed:
            self.stats["denied"] += 1
            self._log.debug("dns_query_denied", qname=verdict.host or question.qname)
            self.audit.emit(
                Action.DENY, Reason.DNS_NAME_NOT_ALLOWED, Source.DNS,
                host=verdict.host or question.qname, protocol=AUDIT_PROTOCOL,
            )
            return build_reply(wire, question, RCODE_NXDOMAIN)

        try:
            answer_wire = await self.upstream.exchange(wire, tcp=tcp)
        except UpstreamError as error:
            self.stats["servfail"] += 1
            self._log.warning("dns_upstream_failed", qname=verdict.host, error=str(error))
            self._audit_upstream_failed(verdict, question.qname, str(error))
            return build_reply(wire, question, RCODE_SERVFAIL)
        self.stats["forwarded"] += 1
        if verdict.pattern is None:
            # Enforcement is off and no rule names the host: pass the answer through.
            self._audit_unchecked(answer_wire, verdict.host or question.qname)
            return answer_wire

        try:
            chain = follow_chain(read_reply(answer_wire))
        except WireError as error:
            self.stats["servfail"] += 1
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
                self.stats["servfail"] += 1
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

    async def _handle_udp(self, transport: asyncio.DatagramTransport, wire: bytes, peer: object) -> None:
        try:
            reply = await self.answer(wire, tcp=False)
            if reply is not None:
                transport.sendto(reply, peer)
        finally:
            self._in_flight -= 1

    def _on_datagram(self, transport: asyncio.DatagramTransport, wire: bytes, peer: object) -> None:
        if self._in_flight >= MAX_IN_FLIGHT:
            self.stats["dropped"] += 1
            return
        self._in_flight += 1
        asyncio.get_running_loop().create_task(self._handle_udp(transport, wire, peer))

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


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, proxy: DnsProxy) -> None:
        self.proxy = proxy
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None:
            self.proxy._on_datagram(self.transport, data, addr)

