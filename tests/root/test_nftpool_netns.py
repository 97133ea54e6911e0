"""The nftables context pool and its namespace worker in real network namespaces."""

from __future__ import annotations

import asyncio
import os
import resource
import secrets
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtad.lowfds import FD_SETSIZE, RESERVE, SPARE_LOW
from runtad.netns import NetnsWorker, call_in_netns
from runtad.nft import NftContext, NftContextClosedError
from runtad.nftpool import NftPool

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

COMMAND_TIMEOUT = 10
LIST_TABLES = [{"list": {"tables": {"family": "inet"}}}]


@pytest.fixture
def namespaces() -> Iterator[list[Path]]:
    """Three namespaces, each with one inet table named after its index."""
    names = [f"rtp-{secrets.token_hex(4)}" for _ in range(3)]
    try:
        for index, name in enumerate(names):
            subprocess.run(["ip", "netns", "add", name], check=True, timeout=COMMAND_TIMEOUT)
            subprocess.run(
                ["ip", "netns", "exec", name, "nft", "add", "table", "inet", f"t{index}"],
                check=True, timeout=COMMAND_TIMEOUT,
            )  # fmt: skip
        yield [Path("/run/netns", name) for name in names]
    finally:
        for name in names:
            subprocess.run(["ip", "netns", "del", name], check=False, timeout=COMMAND_TIMEOUT)


def table_names(output: list[dict]) -> list[str]:
    return [item["table"]["name"] for item in output if "table" in item]


def inode(path: Path) -> int:
    return os.stat(path).st_ino


def current_netns_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_worker_runs_in_namespace(namespaces: list[Path]) -> None:
    worker = NetnsWorker("test-netns")
    try:
        seen = worker.call(namespaces[0], lambda: os.stat("/proc/thread-self/ns/net").st_ino)
        back = worker.call(namespaces[1], lambda: os.stat("/proc/thread-self/ns/net").st_ino)
    finally:
        worker.close()
    assert seen == inode(namespaces[0])
    assert back == inode(namespaces[1])


def test_worker_missing_namespace_raises(tmp_path: Path) -> None:
    worker = NetnsWorker("test-netns")
    try:
        with pytest.raises(OSError, match="cannot open network namespace"):
            worker.call(tmp_path / "absent", lambda: None)
    finally:
        worker.close()


def test_netlink_fd_of_context(namespaces: list[Path]) -> None:
    context = NftContext.open(namespaces[0])
    try:
        fd = context.netlink_fd()
        assert fd is not None
        assert os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    finally:
        context.try_close()


def test_pool_reopens_in_right_namespace(namespaces: list[Path]) -> None:
    pool = NftPool(capacity=1)
    handles = [pool.handle(path, inode(path)) for path in namespaces]

    async def scenario() -> list[list[str]]:
        seen = []
        for index in (0, 1, 2, 0):
            seen.append(table_names(await handles[index].run_async(LIST_TABLES)))
        return seen

    try:
        seen = asyncio.run(scenario())
    finally:
        pool.close()
    assert seen == [["t0"], ["t1"], ["t2"], ["t0"]]
    assert pool.stats.opened == 4
    assert pool.stats.closed == 4


def test_pool_eviction_closes_descriptor(namespaces: list[Path]) -> None:
    pool = NftPool(capacity=1)
    handles = [pool.handle(path, inode(path)) for path in namespaces]

    async def scenario() -> list[int]:
        counts = []
        for round_index in range(5):
            for handle in handles:
                await handle.run_async(LIST_TABLES)
            counts.append(open_descriptors())
        return counts

    try:
        counts = asyncio.run(scenario())
    finally:
        pool.close()
    # One context open at a time: cycling through 3 namespaces does not grow the table.
    assert max(counts) == min(counts)


def test_pool_contexts_below_fd_setsize(namespaces: list[Path]) -> None:
    pool = NftPool(capacity=3)

    async def scenario() -> None:
        for path in namespaces:
            await pool.handle(path, inode(path)).run_async(LIST_TABLES)

    try:
        asyncio.run(scenario())
        fds = [entry.context.netlink_fd() for entry in pool._entries.values() if entry.context is not None]
    finally:
        pool.close()
    assert len(fds) == 3
    assert all(fd is not None and fd < FD_SETSIZE for fd in fds)


def test_pool_concurrent_namespaces(namespaces: list[Path]) -> None:
    pool = NftPool(capacity=2)
    handles = [pool.handle(path, inode(path)) for path in namespaces]

    async def scenario() -> list[list[str]]:
        batches = [handles[index % 3].run_async(LIST_TABLES) for index in range(30)]
        return [table_names(output) for output in await asyncio.gather(*batches)]

    try:
        seen = asyncio.run(scenario())
    finally:
        pool.close()
    assert seen == [[f"t{index % 3}"] for index in range(30)]
    assert len(pool) == 0


def test_context_closed_raises(namespaces: list[Path]) -> None:
    context = NftContext.open(namespaces[0])
    assert context.try_close()

    with pytest.raises(NftContextClosedError):
        context.run(LIST_TABLES)
    assert context.is_closed


@pytest.fixture
def filled_reserve() -> Iterator[None]:
    """The process-wide reserve filled, and every other low descriptor taken."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 4096:
        pytest.skip("needs a hard limit of at least 4096 open files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4096), hard))
    RESERVE.fill()
    # Take the spare descriptors below 1024 too, so a new socket lands at 1024 or above.
    extra = [os.open(os.devnull, os.O_RDONLY) for _ in range(SPARE_LOW + 8)]
    try:
        yield
    finally:
        for fd in extra:
            os.close(fd)
        RESERVE.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_context_moved_below_fd_setsize(namespaces: list[Path], filled_reserve: None) -> None:
    reserved = RESERVE.available
    context = NftContext.open(namespaces[0])
    fd = context.netlink_fd()

    assert fd is not None
    assert fd < FD_SETSIZE
    assert os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    assert RESERVE.available == reserved - 1
    # A batch on a descriptor of 1024 or above would abort the process here.
    assert table_names(context.run(LIST_TABLES)) == ["t0"]


def test_context_close_returns_slot(namespaces: list[Path], filled_reserve: None) -> None:
    reserved = RESERVE.available
    context = NftContext.open(namespaces[0])
    fd = context.netlink_fd()
    assert fd is not None

    assert context.try_close()

    assert RESERVE.available == reserved
    assert os.readlink(f"/proc/self/fd/{fd}") == os.devnull


def test_worker_nested_same_netns_same_thread(namespaces: list[Path]) -> None:
    worker = NetnsWorker("test-netns")

    def outer() -> tuple[int, int, int]:
        nested = call_in_netns(namespaces[0], lambda: (threading.get_ident(), current_netns_inode()))
        return threading.get_ident(), nested[0], nested[1]

    try:
        outer_thread, nested_thread, nested_inode = worker.call(namespaces[0], outer)
    finally:
        worker.close()
    assert nested_thread == outer_thread
    assert nested_inode == inode(namespaces[0])


def test_worker_nested_other_netns_enters_it(namespaces: list[Path]) -> None:
    worker = NetnsWorker("test-netns")

    def outer() -> tuple[int, int, int]:
        nested = call_in_netns(namespaces[1], lambda: (threading.get_ident(), current_netns_inode()))
        return threading.get_ident(), nested[0], nested[1]

    try:
        outer_thread, nested_thread, nested_inode = worker.call(namespaces[0], outer)
    finally:
        worker.close()
    assert nested_thread != outer_thread
    assert nested_inode == inode(namespaces[1])


def test_worker_call_async_in_namespace(namespaces: list[Path]) -> None:
    worker = NetnsWorker("test-netns")
    try:
        seen = asyncio.run(worker.call_async(namespaces[2], current_netns_inode))
    finally:
        worker.close()
    assert seen == inode(namespaces[2])


def test_pool_call_in_netns_runs_inside(namespaces: list[Path]) -> None:
    pool = NftPool(capacity=2)
    handle = pool.handle(namespaces[1], inode(namespaces[1]))

    def work(context: NftContext) -> tuple[int, list[str]]:
        return current_netns_inode(), table_names(context.run(LIST_TABLES))

    try:
        seen_inode, tables = asyncio.run(handle.call_in_netns(work))
    finally:
        pool.close()
    assert seen_inode == inode(namespaces[1])
    assert tables == ["t1"]
    assert pool.stats.opened == 1


def test_pool_call_in_netns_reuses_context(namespaces: list[Path]) -> None:
    pool = NftPool(capacity=2)
    handle = pool.handle(namespaces[0], inode(namespaces[0]))

    async def scenario() -> list[str]:
        await handle.run_async(LIST_TABLES)
        return await handle.call_in_netns(lambda context: table_names(context.run(LIST_TABLES)))

    try:
        tables = asyncio.run(scenario())
    finally:
        pool.close()
    assert tables == ["t0"]
    assert pool.stats.opened == 1
