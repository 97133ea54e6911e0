"""A bounded pool of libnftables contexts, one per namespace, least recently used closed first.

A libnftables context costs about 130 KiB and one netlink descriptor below 1024
(lowfds.py), so one context per sandbox for the sandbox's life caps a daemon at about
980 sandboxes and 150 MiB of contexts at 1,000. The pool keeps at most `capacity`
contexts open. A sandbox's handle takes the context of its namespace from the pool,
opening it on demand, and the pool closes the least recently used idle context to make
room. Opening one took about 0.4 ms (median) on the pool's namespace worker, measured
on a shared 2-CPU machine.

The pool belongs to one event loop: handles are used from the loop thread, and only the
batches themselves and the opening run on other threads.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .lowfds import RESERVE
from .netns import NetnsWorker
from .nft import Command, NftContext

# Contexts open at once. Each uses a descriptor below 1024 and about 130 KiB, and the
# busiest sandboxes (DNS answers, policy writes) keep theirs open at this size.
DEFAULT_CAPACITY = 96

# The pool's key for a namespace: the path and the nsfs inode, so a namespace made again
# at the same path gets a context of its own.
NetnsKey = tuple[str, int]
# Threads that open contexts and run call_in_netns work. Each sandbox's start pass spends
# most of its time in the kernel (batches, NFLOG bind, sysctl), with the GIL released, so
# four threads overlap them. Four against two cut one restart of 1,000 sandboxes from
# 14-17 s to 4.4-6.1 s (bench/scale.py's daemon, shared 2-CPU machine). Work that lists
# sets must hold kernelstart's listing lock, because libnftables 1.0.6 renders sets with strtok.
WORKER_THREADS = 4
OPEN_TIMES_KEPT = 1000
Opener = Callable[[Path], NftContext]
T = TypeVar("T")


@dataclass
class _Entry:
    # The task that opens the context; every caller waiting for the context awaits it.
    opening: asyncio.Task[NftContext] | None = None
    context: NftContext | None = None
    users: int = 0
    discarded: bool = False


@dataclass
class PoolStats:
    """Counts since the pool was made, for metrics and tests."""

    opened: int = 0
    closed: int = 0
    waited: int = 0
    open_seconds: list[float] = field(default_factory=list)


class NftPool:
    """At most `capacity` open libnftables contexts, each bound to one network namespace."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY, opener: Opener | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"nftables context pool capacity must be at least 1, not {capacity}")
        self.capacity = capacity
        self._worker = NetnsWorker("nft-pool", WORKER_THREADS)
        self._opener = opener
        self._entries: OrderedDict[NetnsKey, _Entry] = OrderedDict()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.stats = PoolStats()

    def __len__(self) -> int:
        return len(self._entries)

    def is_open(self, key: NetnsKey) -> bool:
        entry = self._entries.get(key)
        return entry is not None and entry.context is not None

    def handle(self, netns_path: Path, netns_inode: int) -> PooledNft:
        """Return the handle through which one sandbox runs its batches."""
        return PooledNft(self, netns_path, (str(netns_path), netns_inode))

    async def run(self, key: NetnsKey, netns_path: Path, commands: list[Command]) -> list[dict[str, Any]]:
        """Apply commands in the namespace with a pooled context, opening one if needed."""
        entry = await self._acquire(key, netns_path)
        try:
            assert entry.context is not None
            return await entry.context.run_async(commands)
        finally:
            self._release(key, entry)

    async def call_in_netns(self, key: NetnsKey, netns_path: Path, work: Callable[[NftContext], T]) -> T:
        """Call work with the namespace's pooled context on a pool thread inside the namespace.

        work can run several batches and open the namespace's other sockets in one pass,
        so they share one thread hand-off and one namespace switch.
        """
        entry = await self._acquire(key, netns_path)
        try:
            context = entry.context
            assert context is not None
            return await self._worker.call_async(netns_path, lambda: work(context))
        finally:
            self._release(key, entry)

    def discard(self, key: NetnsKey) -> None:
        """Close the namespace's context now, or when its last batch ends."""
        entry = self._entries.get(key)
        if entry is None:
            return
        entry.discarded = True
        if entry.users == 0 and entry.context is not None:
            self._close(key, entry)

    def close(self) -> None:
        """Close every idle context and end the pool's threads; batches still running keep theirs."""
        for key in list(self._entries):
            self.discard(key)
        self._worker.close()

    # --- acquire and release -------------------------------------------------------

    async def _acquire(self, key: NetnsKey, netns_path: Path) -> _Entry:
        while True:
            entry = self._entries.get(key)
            if entry is not None and not entry.discarded:
                self._entries.move_to_end(key)
                assert entry.opening is not None
                entry.users += 1
                try:
                    # Shielded: one caller's cancellation must not cancel the opening
                    # that other callers wait for.
                    await asyncio.shield(entry.opening)
                except BaseException:
                    entry.users -= 1
                    raise
                return entry
            if len(self._entries) < self.capacity or self._close_least_recent():
                return await self._open(key, netns_path)
            await self._wait_for_release()

    async def _open(self, key: NetnsKey, netns_path: Path) -> _Entry:
        loop = asyncio.get_running_loop()
        entry = _Entry()
        self._entries[key] = entry
        entry.opening = loop.create_task(self._open_context(key, netns_path, entry))
        entry.users += 1
        try:
            await asyncio.shield(entry.opening)
        except BaseException:
            entry.users -= 1
            raise
        return entry

    async def _open_context(self, key: NetnsKey, netns_path: Path, entry: _Entry) -> NftContext:
        """Open the context and store it in entry before the task ends, or drop the entry.

        Storing it here, not in a done callback, means that whoever sees the task done
        also sees entry.context set.
        """
        started = time.perf_counter()
        try:
            if self._opener is not None:
                context = await asyncio.to_thread(self._opener, netns_path)
            else:
                # Inside the namespace already, so NftContext.open's own call_in_netns runs
                # on this worker thread. That is one hand-off from the event loop, not two.
                context = await self._worker.call_async(netns_path, lambda: NftContext.open(netns_path))
        except BaseException:
            if self._entries.get(key) is entry:
                del self._entries[key]
            self._wake_all()
            raise
        entry.context = context
        self.stats.opened += 1
        self.stats.open_seconds.append(time.perf_counter() - started)
        # Only the recent ones: enough for a median, bounded whatever the uptime.
        del self.stats.open_seconds[:-OPEN_TIMES_KEPT]
        if entry.discarded and entry.users == 0:
            self._close(key, entry)
        return context

    def _release(self, key: NetnsKey, entry: _Entry) -> None:
        entry.users -= 1
        if entry.users > 0:
            return
        if entry.discarded or len(self._entries) > self.capacity:
            self._close(key, entry)
        self._wake_all()

    def _close_least_recent(self) -> bool:
        """Close the least recently used idle context; return whether one was closed."""
        for key, entry in self._entries.items():
            if entry.users == 0 and entry.context is not None and entry.context.try_close():
                self._forget(key, entry)
                return True
        return False

    def _close(self, key: NetnsKey, entry: _Entry) -> None:
        assert entry.context is not None
        if entry.context.try_close():
            self._forget(key, entry)

    def _forget(self, key: NetnsKey, entry: _Entry) -> None:
        if self._entries.get(key) is entry:
            del self._entries[key]
        self.stats.closed += 1
        # The context's descriptor below 1024 is free again: keep it reserved.
        RESERVE.top_up()
        self._wake_all()

    async def _wait_for_release(self) -> None:
        self.stats.waited += 1
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _wake_all(self) -> None:
        # Every waiter checks again: waking one could be lost to a waiter cancelled meanwhile.
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)


class PooledNft:
    """One sandbox's way to the pool, with NftContext's run_async."""

    def __init__(self, pool: NftPool, netns_path: Path, key: NetnsKey) -> None:
        self.pool = pool
        self.netns_path = netns_path
        self.key = key

    async def run_async(self, commands: list[Command]) -> list[dict[str, Any]]:
        return await self.pool.run(self.key, self.netns_path, commands)

    async def call_in_netns(self, work: Callable[[NftContext], T]) -> T:
        """Call work with this namespace's context, inside the namespace (NftPool.call_in_netns)."""
        return await self.pool.call_in_netns(self.key, self.netns_path, work)

    def release(self) -> None:
        """Close this namespace's context: the sandbox stops or its namespace goes away."""
        self.pool.discard(self.key)


# The daemon's pool: its sandboxes share it, so the bound applies to the whole process.
POOL = NftPool()
