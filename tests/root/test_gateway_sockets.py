"""The gateway's outbound sockets: made in the sandbox's namespace, marked, in bursts."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from runtad.gateway import sockets as sockets_module
from runtad.gateway.sockets import SO_MARK, OutboundSockets
from runtad.netns import call_in_netns

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

MARK = 0x72756E74
T = TypeVar("T")


@pytest.fixture
def netns() -> Iterator[Path]:
    name = f"rtgw-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield Path("/run/netns") / name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def listener_in(path: Path) -> socket.socket:
    def make() -> socket.socket:
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(512)
        return server

    return call_in_netns(path, make)


def test_outbound_socket_lives_in_namespace(netns: Path) -> None:
    server = listener_in(netns)
    pool = OutboundSockets(netns, MARK)

    async def body() -> None:
        sock = await pool.take(socket.AF_INET)
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, server.getsockname()), 5)
        sock.close()

    try:
        asyncio.run(body())
    finally:
        pool.close()
        server.close()
    # The same address in this process's own namespace has no listener.
    probe = socket.socket()
    with pytest.raises(OSError):
        probe.connect(server.getsockname())
    probe.close()


def test_outbound_socket_marked_and_nonblocking(netns: Path) -> None:
    pool = OutboundSockets(netns, MARK)
    try:
        sock = asyncio.run(pool.take(socket.AF_INET6))
        assert sock.getsockopt(socket.SOL_SOCKET, SO_MARK) == MARK
        assert sock.getblocking() is False
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        sock.close()
    finally:
        pool.close()


def test_outbound_burst_gets_distinct_sockets(netns: Path) -> None:
    pool = OutboundSockets(netns, MARK)

    async def body() -> list[socket.socket]:
        return await asyncio.wait_for(
            asyncio.gather(*(pool.take(socket.AF_INET) for _ in range(500))), 30
        )

    try:
        sockets = asyncio.run(body())
        assert len({sock.fileno() for sock in sockets}) == 500
        for sock in sockets:
            sock.close()
    finally:
        pool.close()


def test_outbound_close_releases_spares(netns: Path) -> None:
    before = len(os.listdir("/proc/self/fd"))
    pool = OutboundSockets(netns, MARK)
    asyncio.run(pool.take(socket.AF_INET)).close()
    pool.close()
    assert len(os.listdir("/proc/self/fd")) == before


def test_outbound_batches_grow_under_load(netns: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    refills = 0
    original = sockets_module.call_in_netns_async

    async def counting(path: Path, function: Callable[[], T]) -> T:
        nonlocal refills
        refills += 1
        return await original(path, function)

    monkeypatch.setattr(sockets_module, "call_in_netns_async", counting)
    pool = OutboundSockets(netns, MARK)

    async def body() -> list[socket.socket]:
        # One connection at a time, as fast as they come: batches of 16, 32, 64, 128.
        return [await pool.take(socket.AF_INET) for _ in range(240)]

    try:
        outbound = asyncio.run(asyncio.wait_for(body(), 30))
        assert len({sock.fileno() for sock in outbound}) == 240
        assert refills == 4
        for sock in outbound:
            sock.close()
    finally:
        pool.close()


def test_outbound_batches_shrink_when_quiet(netns: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    refills = 0
    original = sockets_module.call_in_netns_async

    async def counting(path: Path, function: Callable[[], T]) -> T:
        nonlocal refills
        refills += 1
        return await original(path, function)

    monkeypatch.setattr(sockets_module, "call_in_netns_async", counting)
    monkeypatch.setattr(sockets_module, "BATCH_GROWTH_SECONDS", 0.2)
    pool = OutboundSockets(netns, MARK)

    async def body() -> list[socket.socket]:
        outbound = [await pool.take(socket.AF_INET) for _ in range(48)]  # batches of 16, 32
        await asyncio.sleep(0.4)
        # After a quiet spell the next batch is 16 again, so the 17th socket needs another.
        outbound += [await pool.take(socket.AF_INET) for _ in range(17)]
        return outbound

    try:
        outbound = asyncio.run(asyncio.wait_for(body(), 30))
        assert len({sock.fileno() for sock in outbound}) == 65
        assert refills == 4
        for sock in outbound:
            sock.close()
    finally:
        pool.close()
