"""splice relay between two loopback TCP connections: data, half-close, resets, limits."""

from __future__ import annotations

import asyncio
import fcntl
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest

from runtad.gateway.relay import DEFAULT_PIPE_SIZE, Relay, RelayResult

pytestmark = pytest.mark.timeout(60)


@dataclass
class Pair:
    """The relay's two sockets and the far ends that tests drive."""

    client: socket.socket  # the sandbox application's end
    server: socket.socket  # the origin server's end
    relay: Relay


def connected_pair() -> tuple[socket.socket, socket.socket]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        near = socket.create_connection(listener.getsockname())
        far, _ = listener.accept()
    near.setblocking(False)
    far.setblocking(False)
    return near, far


@asynccontextmanager
async def relayed(idle_timeout: float = 30.0, replay: bytes = b"") -> AsyncIterator[tuple[Pair, asyncio.Task[RelayResult]]]:
    client, gateway_side = connected_pair()
    gateway_upstream, server = connected_pair()
    relay = Relay(gateway_side, gateway_upstream, idle_timeout=idle_timeout)
    task = asyncio.get_running_loop().create_task(relay.run(replay))
    try:
        yield Pair(client, server, relay), task
    finally:
        relay.abort("test_over")
        await asyncio.gather(task, return_exceptions=True)
        client.close()
        server.close()


async def receive_all(sock: socket.socket, count: int) -> bytes:
    loop = asyncio.get_running_loop()
    data = bytearray()
    while len(data) < count:
        piece = await loop.sock_recv(sock, 1 << 20)
        if not piece:
            break
        data += piece
    return bytes(data)


async def receive_until_eof(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    data = bytearray()
    while piece := await loop.sock_recv(sock, 1 << 20):
        data += piece
    return bytes(data)


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 30))


def test_relay_replays_first_flight() -> None:
    async def body() -> None:
        async with relayed(replay=b"hello ") as (pair, _):
            loop = asyncio.get_running_loop()
            await loop.sock_sendall(pair.client, b"world")
            assert await receive_all(pair.server, 11) == b"hello world"

    run(body)


def test_relay_large_download_intact() -> None:
    payload = os.urandom(1 << 20) * 8

    async def body() -> None:
        async with relayed() as (pair, _):
            loop = asyncio.get_running_loop()
            sending = loop.create_task(loop.sock_sendall(pair.server, payload))
            received = await receive_all(pair.client, len(payload))
            await sending
            assert received == payload

    run(body)


def test_relay_half_close_both_ways() -> None:
    async def body() -> None:
        async with relayed() as (pair, task):
            loop = asyncio.get_running_loop()
            await loop.sock_sendall(pair.client, b"request")
            pair.client.shutdown(socket.SHUT_WR)
            assert await receive_until_eof(pair.server) == b"request"
            await loop.sock_sendall(pair.server, b"response after the client's EOF")
            pair.server.shutdown(socket.SHUT_WR)
            assert await receive_until_eof(pair.client) == b"response after the client's EOF"
            result = await task
            assert result.ending == "closed"
            assert result.bytes_up == len(b"request")
            assert result.bytes_down == len(b"response after the client's EOF")

    run(body)


def test_relay_passes_reset_on() -> None:
    async def body() -> None:
        async with relayed() as (pair, task):
            pair.server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            pair.server.close()
            result = await task
            assert result.ending == "reset"
            with pytest.raises(ConnectionResetError):
                await receive_until_eof(pair.client)

    run(body)


def test_relay_back_pressure_stops_reading() -> None:
    async def body() -> None:
        async with relayed() as (pair, _):
            loop = asyncio.get_running_loop()
            chunk = bytes(1 << 20)
            sent = 0
            # The client reads nothing: the server's sends must block once the socket
            # buffers and the one pipe are full, instead of the gateway buffering more.
            with pytest.raises(TimeoutError):
                for _ in range(256):
                    await asyncio.wait_for(loop.sock_sendall(pair.server, chunk), 1.0)
                    sent += len(chunk)
            assert sent < 64 << 20

    run(body)


def test_relay_idle_timeout_resets() -> None:
    async def body() -> None:
        async with relayed(idle_timeout=0.3) as (pair, task):
            result = await asyncio.wait_for(task, 5)
            assert result.ending == "idle"
            with pytest.raises(ConnectionResetError):
                await receive_until_eof(pair.client)

    run(body)


def test_relay_activity_defers_idle_timeout() -> None:
    async def body() -> None:
        async with relayed(idle_timeout=0.5) as (pair, task):
            loop = asyncio.get_running_loop()
            for _ in range(4):
                await asyncio.sleep(0.25)
                await loop.sock_sendall(pair.client, b"x")
            assert not task.done()
            assert await receive_all(pair.server, 4) == b"xxxx"

    run(body)


def test_relay_abort_resets_both() -> None:
    async def body() -> None:
        async with relayed() as (pair, task):
            pair.relay.abort("revoked")
            assert (await task).ending == "revoked"
            for end in (pair.client, pair.server):
                with pytest.raises(ConnectionResetError):
                    await receive_until_eof(end)

    run(body)


def test_relay_leaves_no_file_descriptors() -> None:
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    async def body() -> None:
        before = open_fds()
        for _ in range(20):
            async with relayed() as (pair, task):
                loop = asyncio.get_running_loop()
                await loop.sock_sendall(pair.client, b"ping")
                pair.client.shutdown(socket.SHUT_WR)
                assert await receive_until_eof(pair.server) == b"ping"
                pair.server.shutdown(socket.SHUT_WR)
                await task
        assert open_fds() == before

    run(body)


def default_pipe_capacity() -> int:
    read_end, write_end = os.pipe()
    try:
        return fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ)
    finally:
        os.close(read_end)
        os.close(write_end)


def test_relay_bulk_both_ways_half_close() -> None:
    upload = os.urandom(1 << 20) * 12
    download = os.urandom(1 << 20) * 16

    async def body() -> None:
        async with relayed() as (pair, task):
            loop = asyncio.get_running_loop()

            async def client_side() -> bytes:
                await loop.sock_sendall(pair.client, upload)
                pair.client.shutdown(socket.SHUT_WR)
                return await receive_until_eof(pair.client)

            async def server_side() -> bytes:
                sending = loop.create_task(loop.sock_sendall(pair.server, download))
                received = await receive_until_eof(pair.server)
                await sending
                pair.server.shutdown(socket.SHUT_WR)
                return received

            at_client, at_server = await asyncio.gather(client_side(), server_side())
            assert at_server == upload
            assert at_client == download
            result = await task
            assert result.ending == "closed"
            assert result.bytes_up == len(upload)
            assert result.bytes_down == len(download)

    run(body)


def test_relay_pipe_stays_default_when_short() -> None:
    async def body() -> None:
        async with relayed() as (pair, _):
            loop = asyncio.get_running_loop()
            await loop.sock_sendall(pair.client, b"GET / HTTP/1.1\r\n\r\n")
            assert await receive_all(pair.server, 18) == b"GET / HTTP/1.1\r\n\r\n"
            await loop.sock_sendall(pair.server, b"HTTP/1.1 204 No Content\r\n\r\n")
            assert await receive_all(pair.client, 27) == b"HTTP/1.1 204 No Content\r\n\r\n"
            default = default_pipe_capacity()
            assert pair.relay.pipe_capacities() == (default, default)

    run(body)


def test_relay_pipe_grows_on_bulk() -> None:
    async def body() -> None:
        async with relayed() as (pair, _):
            loop = asyncio.get_running_loop()
            payload = os.urandom(1 << 20) * 16
            sending = loop.create_task(loop.sock_sendall(pair.server, payload))
            received = await receive_all(pair.client, len(payload))
            await sending
            assert received == payload
            up, down = pair.relay.pipe_capacities()
            assert up == default_pipe_capacity()
            assert down == DEFAULT_PIPE_SIZE

    run(body)
