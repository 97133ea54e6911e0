"""The coalescing set writer: one transaction per turn, callers woken only after commit."""

from __future__ import annotations

import asyncio
import random

import pytest

from runtad.addressbook import AddressBook, Learned
from runtad.errors import KernelApplyError
from runtad.nftgen import GenerationReadError
from runtad.setwriter import SetWriter, SetWriterClosed


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeKernel:
    """Records each transaction, bumps a generation ID on commit, and can fail or stall."""

    def __init__(self) -> None:
        self.transactions: list[list[dict]] = []
        self.committed: set[str] = set()
        self.generation = 7
        self.fail_next = False
        self.gate: asyncio.Event | None = None

    async def apply(self, commands: list[dict]) -> list[dict]:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_next:
            self.fail_next = False
            raise KernelApplyError("sandbox-a", "Could not process rule: No space left on device")
        self.transactions.append(commands)
        self.generation += 1
        for command in commands:
            for verb in ("add", "delete"):
                element = command.get(verb, {}).get("element")
                if verb == "add" and element is not None:
                    self.committed.update(item["elem"]["val"] for item in element["elem"])
        return []

    def read(self) -> int:
        return self.generation

    def close(self) -> None:
        pass


class BrokenReader:
    def read(self) -> int:
        raise GenerationReadError("/run/netns/sandbox-a", "ConnectionRefusedError")

    def close(self) -> None:
        pass


def learned(address: str, timeout: int = 305, pattern: str = "pypi.org") -> list[Learned]:
    return [Learned(address, timeout, pattern, "dns")]


def make_writer(
    kernel: FakeKernel, *, watch: bool = True, slack: float = 0.0
) -> tuple[SetWriter, AddressBook, Clock]:
    clock = Clock()
    book = AddressBook(clock)
    writer = SetWriter("sandbox-a", book, kernel.apply, slack=slack)
    if watch:
        writer.watch_generation(kernel)  # type: ignore[arg-type]
    return writer, book, clock


def deleted_addresses(commands: list[dict]) -> list[str]:
    deleted: list[str] = []
    for command in commands:
        if "delete" in command:
            deleted.extend(command["delete"]["element"]["elem"])
    return deleted


def added_timeouts(commands: list[dict]) -> dict[str, int]:
    timeouts: dict[str, int] = {}
    for command in commands:
        if "add" in command:
            for item in command["add"]["element"]["elem"]:
                timeouts[item["elem"]["val"]] = item["elem"]["timeout"]
    return timeouts


def test_writer_coalesces_one_turn() -> None:
    async def scenario() -> None:
        kernel = FakeKernel()
        writer, book, _ = make_writer(kernel)
        await asyncio.gather(*(writer.learn(learned(f"192.0.2.{index}")) for index in range(10)))
        assert len(kernel.transactions) == 1
        assert len(book) == 10

    asyncio.run(scenario())


def test_writer_answers_only_after_commit() -> None:
    async def scenario() -> None:
        kernel = FakeKernel()
        kernel.gate = asyncio.Event()
        writer, book, _ = make_writer(kernel)
        waiter = asyncio.ensure_future(writer.learn(learned("192.0.2.10")))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not waiter.done()
        assert not book.is_allowed("192.0.2.10")
        kernel.gate.set()
        await waiter
        assert "192.0.2.10" in kernel.committed
        assert book.is_allowed("192.0.2.10")

    asyncio.run(scenario())


def test_writer_failure_fails_its_batch() -> None:
    async def scenario() -> None:
        kernel = FakeKernel()
        kernel.fail_next = True
        writer, book, _ = make_writer(kernel)
        results = await asyncio.gather(
            writer.learn(learned("192.0.2.10")), writer.learn(learned("192.0.2.11")), return_exceptions=True,
        )
        assert all(isinstance(result, KernelApplyError) for result in results)
        assert len(book) == 0
        assert writer.stats["failed_transactions"] == 1

    asyncio.run(scenario())


def test_writer_failure_spares_next_batch() -> None:
    async def scenario() -> None:
        kernel = FakeKernel()
        kernel.fail_next = True
        writer, book, _ = make_writer(kernel)
        first = writer.learn(learned("192.0.2.10"))
        with pytest.raises(KernelApplyError):
            await first
        await writer.learn(learned("192.0.2.11"))
        assert book.is_allowed("192.0.2.11")
        assert not book.is_allowed("192.0.2.10")

    asyncio.run(scenario())


def test_writer_queues_during_slow_transaction() -> None:
    async def scenario() -> None:
        kernel = FakeKernel()
        kernel.gate = asyncio.Event()
        writer, _, _ = make_writer(kernel)
        first = asyncio.ensure_future(writer.learn(learned("192.0.2.10")))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        second = asyncio.ensure_future(writer.learn(learned("192.0.2.11")))
        third = asyncio.ensure_future(writer.learn(learned("192.0.2.12")))
        await asyncio.sleep(0)
        assert not second.done()
        kernel.gate.set()
        await asyncio.gather(first, second, third)
        assert len(kernel.transactions) == 2
        assert sorted(added_timeouts(kernel.transactions[1])) == ["192.0.2.11", "192.0.2.12"]

    asyncio.run(scenario())


def test_writer_concurrent_callers_see_commit() -> None:
    async def scenario() -> None:
        kernel = FakeKernel()
        rng = random.Random(5)
        original_apply = kernel.apply

        async def jittery_apply(commands: list[dict]) -> list[dict]:
            for _ in range(rng.randrange(3)):
                await asyncio.sleep(0)
            return await original_apply(commands)

        writer, _, _ = make_writer(kernel)
        writer._apply = jittery_apply
        early: list[str] = []

        async def caller(index: int) -> None:
            for _ in range(rng.randrange(4)):
                await asyncio.sleep(0)
            address = f"198.51.100.{index % 200}"
            await writer.learn(learned(address))
            if address not in kernel.committed:
                early.append(address)

        await asyncio.wait_for(asyncio.gather(*(caller(index) for index in range(400))), 10)
        assert early == []
        assert 1 < len(kernel.transactions) < 400

    asyncio.run(scenario())


def test_writer_skips_covered_in_sync() -> None:
    async def scenario() -> None:
        kernel = FakeKernel()
        writer, book, clock = make_writer(kernel, slack=2.5)
        await writer.learn(learned("192.0.2.10"))
        clock.now += 1
        await writer.learn(learned("192.0.2.10", pattern="*.pypi.org"))
        assert len(kernel.transactions) == 1
        assert writer.stats["skipped_addresses"] == 1
        assert [row[0] for row in book.addresses_of("*.pypi.org")] == ["192.0.2.10"]

    asyncio.run(scenario())


def test_writer_rewrites_after_foreign_transaction() -> None:
    async def scenario() -> None:
        kernel = FakeKernel()
        writer, _, clock = make_writer(kernel, slack=2.5)
        await writer.learn(learned("192.0.2.10"))
        kernel.generation += 1  # such as `nft delete element` run by hand
        kernel.committed.discard("192.0.2.10")
        clock.now += 1
        await writer.learn(learned("192.0.2.10"))
        assert len(kernel.transactions) == 2
        assert deleted_addresses(kernel.transactions[1]) == []
        assert added_timeouts(kernel.transactions[1]) == {"192.0.2.10": 304}
        assert "192.0.2.10" in kernel.committed

    asyncio.run(scenario())


def test_writer_distrusts_interleaved_transaction() -> None:
    async def scenario() -> None:
        kernel = FakeKernel()
        original_apply = kernel.apply

        async def apply_with_intruder(commands: list[dict]) -> list[dict]:
            kernel.generation += 1  # another process commits just before runtad
            return await original_apply(commands)

        writer, _, clock = make_writer(kernel, slack=2.5)
        writer._apply = apply_with_intruder
        await writer.learn(learned("192.0.2.10"))
        writer._apply = original_apply
        clock.now += 1
        await writer.learn(learned("192.0.2.10"))
        assert len(kernel.transactions) == 2

    asyncio.run(scenario())


def test_writer_without_generation_always_writes() -> None:
    async def scenario() -> None:
        kernel = FakeKernel()
        writer, _, clock = make_writer(kernel, slack=2.5)
        writer.watch_generation(BrokenReader())  # type: ignore[arg-type]
        await writer.learn(learned("192.0.2.10"))
        clock.now += 1
        await writer.learn(learned("192.0.2.10"))
        assert len(kernel.transactions) == 2
        assert writer.stats["skipped_addresses"] == 0

    asyncio.run(scenario())


def test_writer_after_failure_writes_covered() -> None:
    async def scenario() -> None:
        kernel = FakeKernel()
        writer, _, clock = make_writer(kernel, slack=2.5)
        await writer.learn(learned("192.0.2.10"))
        kernel.fail_next = True
        with pytest.raises(KernelApplyError):
            await writer.learn(learned("192.0.2.11"))
        clock.now += 1
        await writer.learn(learned("192.0.2.10"))
        assert added_timeouts(kernel.transactions[-1]) == {"192.0.2.10": 304}

    asyncio.run(scenario())


def test_writer_closed_rejects() -> None:
    async def scenario() -> None:
        kernel = FakeKernel()
        writer, _, _ = make_writer(kernel)
        await writer.close()
        with pytest.raises(SetWriterClosed, match="sandbox-a"):
            await writer.learn(learned("192.0.2.10"))
        assert kernel.transactions == []

    asyncio.run(scenario())


def test_writer_close_finishes_running_batch() -> None:
    async def scenario() -> None:
        kernel = FakeKernel()
        kernel.gate = asyncio.Event()
        writer, _, _ = make_writer(kernel)
        waiter = asyncio.ensure_future(writer.learn(learned("192.0.2.10")))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        closing = asyncio.ensure_future(writer.close())
        await asyncio.sleep(0)
        kernel.gate.set()
        await closing
        await waiter
        assert "192.0.2.10" in kernel.committed

    asyncio.run(scenario())


def test_writer_unexpected_error_fails_batch() -> None:
    class FaultyReader:
        def read(self) -> int:
            raise RuntimeError("reader bug")

        def close(self) -> None:
            pass

    async def scenario() -> None:
        kernel = FakeKernel()
        writer, book, _ = make_writer(kernel)
        writer.watch_generation(FaultyReader())  # type: ignore[arg-type]
        with pytest.raises(RuntimeError, match="reader bug"):
            await asyncio.wait_for(writer.learn(learned("192.0.2.10")), 5)
        writer.watch_generation(kernel)  # type: ignore[arg-type]
        await asyncio.wait_for(writer.learn(learned("192.0.2.11")), 5)
        assert book.is_allowed("192.0.2.11")
        assert not book.is_allowed("192.0.2.10")

    asyncio.run(scenario())
