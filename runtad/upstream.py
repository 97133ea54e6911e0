"""Raw DNS exchanges with the upstream name servers, from the daemon's own namespace.

Messages are forwarded as bytes so that EDNS options, record types and flags pass
through intact. Over UDP, all queries to one server share one socket. Each query gets a
fresh message ID on the way out and its own ID back on the reply. A reply counts only
if its ID and question match what was sent.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections import deque
from dataclasses import dataclass, field

import structlog

from .config import parse_server

log = structlog.get_logger()

# Replies read from one upstream socket per event-loop turn.
READ_BATCH = 64
# Receive buffer of each shared upstream socket, in bytes.
UPSTREAM_RECEIVE_BUFFER = 4 * 1024 * 1024
# Linux's SO_RCVBUFFORCE (asm-generic/socket.h), which Python's socket module lacks.
SO_RCVBUFFORCE = 33
# Largest reply read over UDP: the EDNS payload limit.
MAX_UDP_REPLY = 65535
# Message IDs drawn from os.urandom at once.
RANDOM_IDS_PER_REFILL = 1024


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

    def send(self, wire: bytes) -> asyncio.Future[bytes] | None:
        """Send a query to the first server over UDP now, and return the future of its reply.

        Returns None when that server's socket is not open yet. The future gets the reply,
        or the error exchange would raise for that server. Pass it to exchange as started
        to go on with the other servers. Sending several queries this way before awaiting
        any costs no task per query, which matters when thousands are resolved at once.
        """
        if not self.servers:
            return None
        channel = self._channels.get(self.servers[0])
        if channel is None or channel.closed:
            return None
        return channel.send(wire, self.timeout)

    async def exchange(
        self, wire: bytes, *, tcp: bool = False, started: asyncio.Future[bytes] | None = None
    ) -> bytes:
        """Send one query to each server in turn until one answers; return the answer.

        started is the future that send returned for the same wire. It is the first
        server's try, so the query is not sent to that server twice.
        """
        errors = []
        for index, server in enumerate(self.servers):
            try:
                if tcp:
                    return await asyncio.wait_for(_exchange_tcp(wire, *server), self.timeout)
                if index == 0 and started is not None:
                    return await started
                channel = self._channels.get(server)
                if channel is None or channel.closed:
                    channel = await self._channel(server)
                return await channel.exchange(wire, self.timeout)
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


class _UdpChannel:
    """One connected UDP socket to one server, shared by every query in flight.

    The socket is read directly, every datagram waiting per readiness event, because
    asyncio's datagram transport reads one per event-loop turn. Queries time out through
    one timer for the whole channel rather than one wait_for task each.
    """

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self.sock = sock
        self.pending: dict[int, tuple[bytes, asyncio.Future[bytes]]] = {}
        self.closed = False
        self._loop = loop
        # (deadline, message ID, future) in the order sent. Every query of one channel has
        # the same timeout, so deadlines come in order too.
        self._deadlines: deque[tuple[float, int, asyncio.Future[bytes]]] = deque()
        self._sweeper: asyncio.TimerHandle | None = None
        self._random_ids: list[int] = []
        loop.add_reader(sock.fileno(), self._read_ready)

    @classmethod
    async def open(cls, host: str, port: int) -> _UdpChannel:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            _grow_receive_buffer(sock)
            sock.connect((host, port))
        except BaseException:
            sock.close()
            raise
        return cls(sock, asyncio.get_running_loop())

    def _read_ready(self) -> None:
        for _ in range(READ_BATCH):
            try:
                data = self.sock.recv(MAX_UDP_REPLY)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                # ICMP port unreachable and the like: fail the queries in flight now, not by timeout.
                self._fail_pending(error)
                return
            self._reply_received(data)

    def _reply_received(self, data: bytes) -> None:
        if len(data) < 12:
            return
        message_id = (data[0] << 8) | data[1]
        entry = self.pending.get(message_id)
        if entry is None:
            return
        query, future = entry
        if future.done():
            # Cancelled by its caller: the reply is not needed, and the ID is free again.
            del self.pending[message_id]
            return
        if not _same_question(query, data):
            return
        del self.pending[message_id]
        future.set_result(query[:2] + data[2:])

    def _fail_pending(self, error: Exception) -> None:
        for _, future in self.pending.values():
            if not future.done():
                future.set_exception(error)
        self.pending.clear()

    async def exchange(self, wire: bytes, timeout: float) -> bytes:
        """Send one query and return its reply, or raise TimeoutError after timeout seconds."""
        return await self.send(wire, timeout)

    def send(self, wire: bytes, timeout: float) -> asyncio.Future[bytes]:
        """Send one query now, and return the future of its reply.

        The future raises TimeoutError after timeout seconds, or the socket's OSError.
        A future cancelled by its caller keeps its message ID for at most timeout seconds:
        until its reply arrives or the sweep after its deadline.
        """
        if self.closed or len(wire) < 12:
            raise ConnectionError("upstream socket not open")
        message_id = self._free_id()
        future: asyncio.Future[bytes] = self._loop.create_future()
        self.pending[message_id] = (wire, future)
        self._deadlines.append((self._loop.time() + timeout, message_id, future))
        if self._sweeper is None:
            self._sweeper = self._loop.call_later(timeout, self._sweep)
        try:
            self.sock.send(message_id.to_bytes(2, "big") + wire[2:])
        except OSError as error:
            del self.pending[message_id]
            future.set_exception(error)
        return future

    def _sweep(self) -> None:
        """Time out the queries whose deadline passed, then wait for the next deadline."""
        self._sweeper = None
        now = self._loop.time()
        while self._deadlines and self._deadlines[0][0] <= now:
            _, message_id, future = self._deadlines.popleft()
            if self.pending.get(message_id, (b"", None))[1] is future:
                del self.pending[message_id]
            if not future.done():
                future.set_exception(TimeoutError())
        # Queries that got a reply or were cancelled stay queued until their deadline, so
        # drop those at the front. A cancelled one may still hold its ID in pending.
        while self._deadlines and self._deadlines[0][2].done():
            _, message_id, future = self._deadlines.popleft()
            if self.pending.get(message_id, (b"", None))[1] is future:
                del self.pending[message_id]
        if self._deadlines and not self.closed:
            self._sweeper = self._loop.call_at(self._deadlines[0][0], self._sweep)

    def _free_id(self) -> int:
        # Random IDs keep off-path spoofing as hard as for a stub resolver. They come from
        # the OS's random source in bulk, because one getrandom call per query costs more.
        while True:
            if not self._random_ids:
                pool = os.urandom(2 * RANDOM_IDS_PER_REFILL)
                self._random_ids = list(struct.unpack(f"!{RANDOM_IDS_PER_REFILL}H", pool))
            message_id = self._random_ids.pop()
            if message_id not in self.pending:
                return message_id

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self._loop.remove_reader(self.sock.fileno())
        self.sock.close()
        self._fail_pending(ConnectionError("upstream socket closed"))
        self._deadlines.clear()


def _grow_receive_buffer(sock: socket.socket) -> None:
    """Let the shared socket hold a burst of replies while the event loop is busy.

    Every sandbox's queries share this socket, and a large policy write has hundreds in
    flight. The default buffer (about 200 KiB, some 270 replies by the kernel's count)
    drops replies that arrive while the loop applies a set transaction.
    """
    try:
        # SO_RCVBUFFORCE passes net.core.rmem_max; it needs CAP_NET_ADMIN, which runtad has.
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, UPSTREAM_RECEIVE_BUFFER)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UPSTREAM_RECEIVE_BUFFER)


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
