"""Raw DNS exchanges with the upstream name servers, from the daemon's own namespace.

Messages are forwarded as bytes so that EDNS options, record types and flags pass
through intact; only the ID and question are checked on the way back.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Upstream:
    servers: tuple[tuple[str, int], ...]
    timeout: float

    @classmethod
    def from_texts(cls, texts: list[str], timeout: float) -> "Upstream":
        return cls(tuple(parse_server(text) for text in texts), timeout)

    async def exchange(self, wire: bytes, *, tcp: bool = False) -> bytes:
        """Send one query to each server in turn until one answers; return the answer."""
        errors = []
        for host, port in self.servers:
            try:
                if tcp:
                    return await asyncio.wait_for(_exchange_tcp(wire, host, port), self.timeout)
                return await asyncio.wait_for(_exchange_udp(wire, host, port), self.timeout)
            except (OSError, asyncio.TimeoutError, EOFError) as error:
                errors.append(f"{host}:{port}: {type(error).__name__} {error}".strip())
        raise UpstreamError(list(self.servers), "; ".join(errors) or "no servers configured")


async def _exchange_udp(wire: bytes, host: str, port: int) -> bytes:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect((host, port))
        await loop.sock_sendall(sock, wire)
        while True:
            answer = await loop.sock_recv(sock, 65535)
            # A reply must carry our ID and echo our question; anything else is stray.
            if len(answer) >= 12 and answer[:2] == wire[:2] and _same_question(wire, answer):
                return answer


async def _exchange_tcp(wire: bytes, host: str, port: int) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(struct.pack("!H", len(wire)) + wire)
        await writer.drain()
        length = struct.unpack("!H", await reader.readexactly(2))[0]
        return await reader.readexactly(length)
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
