"""The bounded pool of libnftables contexts, with fake contexts in place of libnftables."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from runtad.nft import Command, NftContext
from runtad.nftpool import NftPool

A = Path("/run/netns/a")
B = Path("/run/netns/b")
C = Path("/run/netns/c")
LIST = [{"list": {"tables": {"family": "inet"}}}]


class FakeContext:
    """Records its batches; a batch waits for `gate` when one is given."""

    def __init__(self, netns_path: Path, gate: asyncio.Event | None) -> None:
        self.netns_path = netns_path
        self.gate = gate
        self.batches: list[list[Command]] = []
        self.closed = False

    async def run_async(self, commands: list[Command]) -> list[dict[str, Any]]:
        assert not self.closed, f"batch on the closed context of {self.netns_path}"
        self.batches.append(commands)
        if self.gate is not None:
            await self.gate.wait()
        return [{"netns": str(self.netns_path)}]

    def try_close(self) -> bool:
        self.closed = True
        return True


class FakeOpener:
    def __init__(self, fail_for: Path | None = None) -> None:
        self.opened: list[FakeContext] = []
        self.fail_for = fail_for
        self.gates: dict[Path, asyncio.Event] = {}

    def __call__(self, netns_path: Path) -> NftContext:
        if netns_path == self.fail_for:
            raise OSError(2, f"cannot open network namespace {netns_path}")
        context = FakeContext(netns_path, self.gates.get(netns_path))
        self.opened.append(context)
        return context  # type: ignore[return-value]

    def paths(self) -> list[Path]:
        return [context.netns_path for context in self.opened]


def make_pool(capacity: int, opener: FakeOpener) -> NftPool:
    return NftPool(capacity, opener=opener)


def test_pool_opens_on_first_batch() -> None:
    opener = FakeOpener()
    pool = make_pool(2, opener)

    output = asyncio.run(pool.handle(A, 1).run_async(LIST))

    assert output == [{"netns": str(A)}]
    assert opener.paths() == [A]
    assert pool.is_open((str(A), 1))


def test_pool_reuses_open_context() -> None:
    opener = FakeOpener()
    pool = make_pool(2, opener)
    handle = pool.handle(A, 1)

    async def scenario() -> None:
        await handle.run_async(LIST)
        await handle.run_async(LIST)

    asyncio.run(scenario())
    assert opener.paths() == [A]
    assert len(opener.opened[0].batches) == 2


def test_pool_evicts_least_recent() -> None:
    opener = FakeOpener()
    pool = make_pool(2, opener)

    async def scenario() -> None:
        for path in (A, B, A, C):
            await pool.handle(path, 1).run_async(LIST)

    asyncio.run(scenario())
    context_a, context_b, context_c = opener.opened
    assert context_b.closed
    assert not context_a.closed
    assert not context_c.closed
    assert len(pool) == 2
    assert pool.stats.closed == 1


def test_pool_reopens_after_eviction() -> None:
    opener = FakeOpener()
    pool = make_pool(1, opener)

    async def scenario() -> list[dict[str, Any]]:
        await pool.handle(A, 1).run_async(LIST)
        await pool.handle(B, 1).run_async(LIST)
        return await pool.handle(A, 1).run_async(LIST)

    output = asyncio.run(scenario())
    assert opener.paths() == [A, B, A]
    assert output == [{"netns": str(A)}]
    assert opener.opened[0].closed
    assert opener.opened[1].closed


def test_pool_new_inode_new_context() -> None:
    opener = FakeOpener()
    pool = make_pool(4, opener)

    async def scenario() -> None:
        await pool.handle(A, 1).run_async(LIST)
        await pool.handle(A, 2).run_async(LIST)

    asyncio.run(scenario())
    assert opener.paths() == [A, A]


def test_pool_concurrent_batches_open_once() -> None:
    opener = FakeOpener()
    pool = make_pool(2, opener)
    handle = pool.handle(A, 1)

    async def scenario() -> None:
        await asyncio.gather(*(handle.run_async(LIST) for _ in range(10)))

    asyncio.run(scenario())
    assert opener.paths() == [A]
    assert len(opener.opened[0].batches) == 10


def test_pool_waits_when_all_busy() -> None:
    opener = FakeOpener()
    pool = make_pool(1, opener)

    async def scenario() -> None:
        gate = opener.gates[A] = asyncio.Event()
        busy = asyncio.ensure_future(pool.handle(A, 1).run_async(LIST))
        await asyncio.sleep(0.01)
        waiting = asyncio.ensure_future(pool.handle(B, 1).run_async(LIST))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        assert opener.paths() == [A]
        gate.set()
        await asyncio.wait_for(asyncio.gather(busy, waiting), 5)

    asyncio.run(scenario())
    assert opener.paths() == [A, B]
    assert opener.opened[0].closed
    assert pool.stats.waited == 1


def test_pool_busy_context_not_evicted() -> None:
    opener = FakeOpener()
    pool = make_pool(2, opener)

    async def scenario() -> None:
        gate = opener.gates[A] = asyncio.Event()
        busy = asyncio.ensure_future(pool.handle(A, 1).run_async(LIST))
        await asyncio.sleep(0.01)
        await pool.handle(B, 1).run_async(LIST)
        await pool.handle(C, 1).run_async(LIST)
        assert not opener.opened[0].closed
        gate.set()
        await asyncio.wait_for(busy, 5)

    asyncio.run(scenario())
    assert opener.opened[1].closed
    assert not opener.opened[0].closed


def test_pool_failed_open_raises() -> None:
    opener = FakeOpener(fail_for=A)
    pool = make_pool(2, opener)

    with pytest.raises(OSError):
        asyncio.run(pool.handle(A, 1).run_async(LIST))
    assert len(pool) == 0


def test_pool_cancelled_caller_keeps_opening() -> None:
    opener = FakeOpener()
    pool = make_pool(2, opener)
    handle = pool.handle(A, 1)

    async def scenario() -> list[dict[str, Any]]:
        first = asyncio.ensure_future(handle.run_async(LIST))
        second = asyncio.ensure_future(handle.run_async(LIST))
        await asyncio.sleep(0)
        first.cancel()
        return await asyncio.wait_for(second, 5)

    output = asyncio.run(scenario())
    assert output == [{"netns": str(A)}]
    assert opener.paths() == [A]


def test_pool_release_closes_idle() -> None:
    opener = FakeOpener()
    pool = make_pool(2, opener)
    handle = pool.handle(A, 1)

    asyncio.run(handle.run_async(LIST))
    handle.release()

    assert opener.opened[0].closed
    assert len(pool) == 0


def test_pool_release_while_busy_closes_after() -> None:
    opener = FakeOpener()
    pool = make_pool(2, opener)
    handle = pool.handle(A, 1)

    async def scenario() -> None:
        gate = opener.gates[A] = asyncio.Event()
        busy = asyncio.ensure_future(handle.run_async(LIST))
        await asyncio.sleep(0.01)
        handle.release()
        assert not opener.opened[0].closed
        gate.set()
        await asyncio.wait_for(busy, 5)

    asyncio.run(scenario())
    assert opener.opened[0].closed
    assert len(pool) == 0


def test_pool_close_closes_all() -> None:
    opener = FakeOpener()
    pool = make_pool(4, opener)

    async def scenario() -> None:
        for path in (A, B, C):
            await pool.handle(path, 1).run_async(LIST)

    asyncio.run(scenario())
    pool.close()
    assert all(context.closed for context in opener.opened)
    assert len(pool) == 0


def test_pool_capacity_zero_rejected() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        NftPool(0)


def test_pool_context_set_when_opening_done() -> None:
    opener = FakeOpener()
    pool = make_pool(2, opener)
    key = (str(A), 1)

    async def scenario() -> bool:
        first = asyncio.ensure_future(pool.handle(A, 1).run_async(LIST))
        for _ in range(1000):
            entry = pool._entries.get(key)
            if entry is not None and entry.opening is not None and entry.opening.done():
                # A caller arriving now returns from its wait at once and uses the context.
                return entry.context is not None
            await asyncio.sleep(0)
        await first
        raise AssertionError("the opening task did not finish within 1000 loop turns")

    assert asyncio.run(scenario())
