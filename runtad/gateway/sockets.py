"""Socket helpers of the gateway: original destinations, resets, and outbound sockets.

Outbound sockets are created inside the sandbox's namespace, so a relayed connection
leaves with the sandbox's addresses and routes, and carry a mark that the sandbox's
ruleset accepts without sending them back to the gateway.
"""

from __future__ import annotations

import asyncio
import ctypes
import socket
import struct
from collections import deque
from pathlib import Path

import structlog

from ..netns import call_in_netns_async

log = structlog.get_logger()

# From <linux/netfilter_ipv4.h> and <linux/netfilter_ipv6/ip6_tables.h>: the socket
# option that returns a redirected connection's destination before NAT.
SO_ORIGINAL_DST = 80
IP6T_SO_ORIGINAL_DST = 80
# From <asm-generic/socket.h>; setting it needs CAP_NET_ADMIN.
SO_MARK = 36

# Outbound sockets are made in batches on a worker thread, so that most connections
# need no thread hop: SPARE_SOCKETS at a time, or one per waiting connection in a burst,
# up to MAX_BATCH. When the spares of one batch run out within BATCH_GROWTH_SECONDS of
# its arrival, the next batch is twice as large, up to MAX_BATCH. So a steady stream of
# new connections costs a few thread hops per second, not one per SPARE_SOCKETS
# connections. What a batch leaves over stays as spares for the next connections.
SPARE_SOCKETS = 16
MAX_BATCH = 256
BATCH_GROWTH_SECONDS = 1.0


class sockaddr_in(ctypes.BigEndianStructure):
    """struct sockaddr_in from <linux/in.h>."""

    _pack_ = 1
    _fields_ = [
        ("sin_family", ctypes.c_uint8 * 2),  # host byte order, unlike the rest: not read
        ("sin_port", ctypes.c_uint16),
        ("sin_addr", ctypes.c_uint8 * 4),
        ("sin_zero", ctypes.c_uint8 * 8),
    ]


class sockaddr_in6(ctypes.BigEndianStructure):
    """struct sockaddr_in6 from <linux/in6.h>."""

    _pack_ = 1
    _fields_ = [
        ("sin6_family", ctypes.c_uint8 * 2),  # host byte order, unlike the rest: not read
        ("sin6_port", ctypes.c_uint16),
        ("sin6_flowinfo", ctypes.c_uint32),
        ("sin6_addr", ctypes.c_uint8 * 16),
        ("sin6_scope_id", ctypes.c_uint32),
    ]


class OriginalDestinationError(OSError):
    """A connection reached the gateway without a NAT redirect, so it has no destination."""

    def __init__(self, errno: int, peer: object) -> None:
        super().__init__(
            errno, f"connection from {peer} has no original destination: it was not redirected"
        )
        self.peer = peer


def original_destination(conn: socket.socket) -> tuple[str, int]:
    """Return the (address, port) a redirected connection was sent to before NAT."""
    try:
        if conn.family == socket.AF_INET6:
            raw = conn.getsockopt(socket.IPPROTO_IPV6, IP6T_SO_ORIGINAL_DST, ctypes.sizeof(sockaddr_in6))
            address6 = sockaddr_in6.from_buffer_copy(raw.ljust(ctypes.sizeof(sockaddr_in6), b"\0"))
            text = socket.inet_ntop(socket.AF_INET6, bytes(address6.sin6_addr))
            return text, int(address6.sin6_port)
        raw = conn.getsockopt(socket.IPPROTO_IP, SO_ORIGINAL_DST, ctypes.sizeof(sockaddr_in))
        address4 = sockaddr_in.from_buffer_copy(raw.ljust(ctypes.sizeof(sockaddr_in), b"\0"))
        return socket.inet_ntop(socket.AF_INET, bytes(address4.sin_addr)), int(address4.sin_port)
    except OSError as error:
        raise OriginalDestinationError(error.errno or 0, _peer_of(conn)) from error


def _peer_of(conn: socket.socket) -> object:
    try:
        return conn.getpeername()
    except OSError:
        return "an unknown peer"


def close_with_reset(sock: socket.socket) -> None:
    """Close sock so that the peer gets a TCP reset instead of an orderly end."""
    try:
        # SO_LINGER on with a zero timeout makes close() send RST (socket(7)).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass  # already closed by the peer; close() below frees it all the same
    sock.close()


class OutboundClosedError(OSError):
    """The gateway stopped while a connection waited for an outbound socket."""

    def __init__(self, netns_path: Path) -> None:
        super().__init__(f"gateway of network namespace {netns_path} is closed")
        self.netns_path = netns_path


class OutboundSockets:
    """Non-blocking, marked TCP sockets created in one sandbox's namespace."""

    def __init__(self, netns_path: Path, mark: int) -> None:
        self.netns_path = netns_path
        self.mark = mark
        self._spares: dict[int, deque[socket.socket]] = {
            socket.AF_INET: deque(), socket.AF_INET6: deque()
        }
        # The batch being made per family: callers that find no spare wait for it
        # together, so a burst of connections makes one batch at a time, not one each.
        self._batches: dict[int, asyncio.Future[None]] = {}
        self._waiting: dict[int, int] = {socket.AF_INET: 0, socket.AF_INET6: 0}
        # Per family: the size of the last batch and the loop time it arrived.
        self._batch_size: dict[int, int] = {socket.AF_INET: 0, socket.AF_INET6: 0}
        self._refilled_at: dict[int, float] = {
            socket.AF_INET: float("-inf"), socket.AF_INET6: float("-inf")
        }
        self._closed = False

    async def take(self, family: int) -> socket.socket:
        """Return a fresh socket of family, from the spares or from a new batch."""
        spares = self._spares[family]
        self._waiting[family] += 1
        try:
            while not spares:
                batch = self._batches.get(family)
                if batch is None or batch.done():
                    # A finished batch that left no spare was taken by earlier waiters.
                    size = min(max(self._next_batch_size(family), self._waiting[family]), MAX_BATCH)
                    batch = asyncio.ensure_future(self._refill(family, size))
                    self._batches[family] = batch
                await asyncio.shield(batch)
        finally:
            self._waiting[family] -= 1
        return spares.popleft()

    def close(self) -> None:
        self._closed = True
        for spares in self._spares.values():
            while spares:
                spares.popleft().close()

    def _next_batch_size(self, family: int) -> int:
        """Return SPARE_SOCKETS, or twice the last batch when its spares ran out quickly."""
        since_refill = asyncio.get_running_loop().time() - self._refilled_at[family]
        if since_refill < BATCH_GROWTH_SECONDS:
            return min(2 * self._batch_size[family], MAX_BATCH)
        return SPARE_SOCKETS

    async def _refill(self, family: int, size: int) -> None:
        created = await call_in_netns_async(self.netns_path, lambda: self._make_batch(family, size))
        if self._closed:
            for sock in created:
                sock.close()
            raise OutboundClosedError(self.netns_path)
        self._spares[family].extend(created)
        self._batch_size[family] = size
        self._refilled_at[family] = asyncio.get_running_loop().time()

    def _make_batch(self, family: int, size: int) -> list[socket.socket]:
        created: list[socket.socket] = []
        try:
            for _ in range(size):
                sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
                created.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, SO_MARK, self.mark)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except BaseException:
            for sock in created:
                sock.close()
            raise
        return created
