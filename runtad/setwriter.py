"""Coalesced writes of learned addresses to one sandbox's allow sets.

Callers queue addresses and wait. One task takes everything queued during an event-loop
turn, plans it with the address book, applies it as one nftables transaction and commits
the plan. Only then does it wake the callers, so an address is in the kernel set before
the DNS answer that names it is sent. When the transaction fails, every caller whose
addresses were in it gets the error, and nothing of it enters the address book.

Addresses whose elements already cover the request (AddressBook.plan_add, with its
slack) are not written again while the
namespace's nftables generation ID still has the value that runtad's own last
transaction left. Any other transaction in the namespace, such as an
`nft delete element` run by hand, changes the ID. The next batch then adds every covered
address again with its current remaining time, which recreates what was removed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import structlog

from .addressbook import AddressBook, Learned
from .nft import Command
from .nftgen import GenerationReader, GenerationReadError

log = structlog.get_logger()

Apply = Callable[[list[Command]], Awaitable[object]]
# One caller's addresses and the future it waits on.
Waiting = tuple[Sequence[Learned], asyncio.Future[None]]
GENERATION_MASK = 0xFFFFFFFF


class SetWriterClosed(Exception):
    """The sandbox is stopping, so its set writer takes no more addresses."""

    def __init__(self, runtime: str, count: int) -> None:
        super().__init__(
            f"set writer of sandbox {runtime} is closed; {count} addresses were not written."
            " Retry once the sandbox is running again"
        )
        self.runtime = runtime
        self.count = count


class SetWriter:
    """The writer of one sandbox's allow sets: one transaction for each event-loop turn's addresses."""

    def __init__(
        self, runtime: str, book: AddressBook, apply: Apply, generation: GenerationReader | None = None,
        *, slack: float = 0.0,
    ) -> None:
        """Write through apply (one transaction per call) and keep book in step.

        generation reads the namespace's nftables generation ID. Without it, covered
        addresses are written again every time. slack is passed to AddressBook.plan_add.
        """
        self.runtime = runtime
        self.book = book
        self.slack = slack
        self._apply = apply
        self._generation_reader = generation
        # The generation ID after runtad's own last transaction, None when unknown.
        self._generation: int | None = None
        self._generation_failing = False
        self._pending: list[Waiting] = []
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False
        self.stats = {"batches": 0, "transactions": 0, "failed_transactions": 0, "skipped_addresses": 0}
        self._log = log.bind(runtime=runtime)

    def watch_generation(self, reader: GenerationReader) -> None:
        """Skip covered addresses from now on while reader shows no foreign transaction."""
        self._generation_reader = reader
        self._generation = None

    async def learn(self, learned: Sequence[Learned]) -> None:
        """Return once the kernel sets contain every address of learned for its timeout.

        Raises what apply raised when the transaction that carried them failed, and
        SetWriterClosed after close.
        """
        await self.submit(learned)

    def submit(self, learned: Sequence[Learned]) -> asyncio.Future[None]:
        """Queue learned for the next transaction and return a future that completes after it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if self._closed:
            future.set_exception(SetWriterClosed(self.runtime, len(learned)))
            return future
        if not learned:
            future.set_result(None)
            return future
        self._pending.append((learned, future))
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        return future

    async def close(self) -> None:
        """Finish the batch in progress, then fail whatever is still queued."""
        self._closed = True
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
        for learned, future in self._pending:
            if not future.done():
                future.set_exception(SetWriterClosed(self.runtime, len(learned)))
        self._pending.clear()
        if self._generation_reader is not None:
            self._generation_reader.close()
            self._generation_reader = None

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await self._write(batch)
                except asyncio.CancelledError:
                    for _, future in batch:
                        future.cancel()
                    raise
                except Exception as error:  # noqa: BLE001 - whatever failed, its callers must not wait forever
                    self._fail(batch, error)
        finally:
            self._flusher = None

    async def _write(self, batch: list[Waiting]) -> None:
        """Apply and commit the batch, then wake its callers; raise what apply raised."""
        self.stats["batches"] += 1
        items = [item for learned, _ in batch for item in learned]
        before = self._read_generation()
        in_sync = before is not None and before == self._generation
        plan = self.book.plan_add(items, slack=self.slack, kernel_in_sync=in_sync)
        self.stats["skipped_addresses"] += len(plan.skipped)
        if plan.commands:
            await self._apply(plan.commands)
            self.stats["transactions"] += 1
            after = self._read_generation()
            # Trust the new ID only when no other transaction came between the two reads.
            own_commit = before is not None and after == (before + 1) & GENERATION_MASK
            self._generation = after if own_commit else None
        self.book.commit_add(plan)
        for _, future in batch:
            if not future.done():
                future.set_result(None)

    def _fail(self, batch: list[Waiting], error: Exception) -> None:
        self.stats["failed_transactions"] += 1
        self._generation = None
        addresses = sorted({item.address for learned, _ in batch for item in learned})
        self._log.error(
            "set_write_failed", error=str(error), callers=len(batch), addresses=len(addresses),
            first_address=addresses[0] if addresses else None,
        )
        for _, future in batch:
            if not future.done():
                future.set_exception(error)

    def _read_generation(self) -> int | None:
        if self._generation_reader is None:
            return None
        try:
            generation = self._generation_reader.read()
        except GenerationReadError as error:
            if not self._generation_failing:
                self._log.warning("nft_generation_unreadable", error=str(error))
            self._generation_failing = True
            return None
        if self._generation_failing:
            self._log.info("nft_generation_readable_again")
            self._generation_failing = False
        return generation
