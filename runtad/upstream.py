"""Raw DNS exchanges with the upstream name servers, from the daemon's own namespace.

Messages are forwarded as bytes so that EDNS options, record types and flags pass
through intact. Over UDP, all queries to one server share one socket. Each query gets a
fresh message ID on the way out and its own ID back on the reply. A reply counts only
if its ID and question match what was sent.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import struct
from dataclasses import dataclass, field

import structlog

from .config import parse_server

log = structlog.get_logger()


class UpstreamError(Exception):
    """No upstream name server answered in time."""

    def __init__(self, servers: list[tuple[str, int]], detail: str) -> None:
        listed = ", ".join(f"{host}:{port}" for host, port in servers)
        super().__init__(f"no upstream name server answered ({listed}): {detail}")
        self.servers = servers
        self.detail = detail


@dataclass
class Upstream:
    servers: tuple[tuple[str, int], ...]
    timeout: float
    _channels: dict[tuple[str, int], "_UdpChannel"] = field(default_factory=dict, repr=False)
    # Serialises opening a channel: concurrent first queries would each open a socket.
    _opening: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @classmethod
    def from_texts(cls, texts: list[str], timeout: float) -> "Upstream":
        return cls(tuple(parse_server(text) for text in texts), timeout)

    async def exchange(self, wire: bytes, *, tcp: bool = False) -> bytes:
        """Send one query to each server in turn until one answers; return the answer."""
        errors = []
        for server in self.servers:
            try:
                if tcp:
                    return await asyncio.wait_for(_exchange_tcp(wire, *server), self.timeout)
                channel = await self._channel(server)
                return await asyncio.wait_for(channel.exchange(wire), self.timeout)
            except (OSError, asyncio.TimeoutError, EOFError) as error:
                errors.append(f"{server[0]}:{server[1]}: {type(error).__name__} {error}".strip())
        raise UpstreamError(list(self.servers), "; ".join(errors) or "no servers configured")

    async def _channel(self, server: tuple[str, int]) -> "_UdpChannel":
        channel = self._channels.get(server)
        if channel is not None and not channel.closed:
            return channel
        async with self._opening:
            channel = self._channels.get(server)
            if channel is None or channel.closed:
                channel = await _UdpChannel.open(*server)
                self._channels[server] = channel
        return channel

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()


class _UdpChannel(asyncio.DatagramProtocol):
    """One connected UDP socket to one server, shared by every query in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: dict[int, tuple[bytes, asyncio.Future[bytes]]] = {}
        self.closed = False

    @classmethod
    async def open(cls, host: str, port: int) -> "_UdpChannel":
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        _, channel = await loop.create_datagram_endpoint(cls, remote_addr=(host, port), family=family)
        return channel

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        for _, future in self.pending.values():
            if not future.done():
                future.set_exception(ConnectionError("upstream socket closed"))
        self.pending.clear()

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: fail the queries in flight now, not by timeout.
        for _, future in self.pending.values():
            if not future.done():
                future.set_exception(exc)
        self.pending.clear()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 12:
            return
        message_id = struct.unpack_from("!H", data)[0]
        entry = self.pending.get(message_id)
        if entry is None:
            return
        query, future = entry
        if future.done() or not _same_question(query, data):
            return
        del self.pending[message_id]
        future.set_result(query[:2] + data[2:])

    async def exchange(self, wire: bytes) -> bytes:
        if self.transport is None or self.closed or len(wire) < 12:
            raise ConnectionError("upstream socket not open")
        message_id = self._free_id()
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.pending[message_id] = (wire, future)
        try:
            self.transport.sendto(struct.pack("!H", message_id) + wire[2:])
            return await future
        finally:
            if self.pending.get(message_id, (b"", None))[1] is future:
                del self.pending[message_id]

    def _free_id(self) -> int:
        # Random IDs keep off-path spoofing as hard as for a stub resolver.
        while True:
            message_id = secrets.randbelow(65536)
            if message_id not in self.pending:
                return message_id

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def _exchange_tcp(wire: bytes, host: str, port: int) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(struct.pack("!H", len(wire)) + wire)
        await writer.drain()
        length = struct.unpack("!H", await reader.readexactly(2))[0]
        answer = await reader.readexactly(length)
        if len(answer) < 12 or answer[:2] != wire[:2] or not _same_question(wire, answer):
            raise EOFError("upstream TCP response does not match the query")
        return answer
    except asyncio.IncompleteReadError as error:
        raise EOFError("upstream closed the TCP connection early") from error
    finally:
        writer.close()


def _same_question(query: bytes, answer: bytes) -> bool:
    """Compare the question sections byte for byte, ignoring the case of names."""
    end = _question_end(query)
    if end is None or len(answer) < end:
        return False
    return query[12:end].lower() == answer[12:end].lower() and query[4:6] == answer[4:6]


def _question_end(wire: bytes) -> int | None:
    if len(wire) < 12 or struct.unpack("!H", wire[4:6])[0] != 1:
        return None
    offset = 12
    while offset < len(wire):
        length = wire[offset]
        if length == 0:
            return offset + 5 if offset + 5 <= len(wire) else None
        if length & 0xC0:
            return None
        offset += length + 1
    return None
