"""Run a short function inside another network namespace, on a worker thread.

A socket or libnftables context keeps the namespace of the thread that created it, so
the daemon creates per-sandbox sockets and contexts here and uses them from its single
event loop. The event-loop thread itself never switches namespace. Worker threads are
long-lived: each call enters its namespace and goes back to the daemon's afterwards.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from pyroute2 import netns as pyroute2_netns

T = TypeVar("T")

NETNS_RUN_DIR = Path("/run/netns")


class NetnsEnterError(OSError):
    """Entering or leaving a network namespace failed."""


def resolve_netns_path(name_or_path: str) -> Path:
    """Return the file of a namespace given as a name under /run/netns or as a path."""
    if "/" in name_or_path:
        return Path(name_or_path)
    return NETNS_RUN_DIR / name_or_path


def netns_exists(path: Path) -> bool:
    """Tell whether path is a network namespace file (bind mount or /proc link)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        # /proc/self/ns/net and every bind mount of it share the nsfs device.
        return os.fstat(fd).st_dev == os.stat("/proc/self/ns/net").st_dev
    finally:
        os.close(fd)


def call_in_netns(path: Path, function: Callable[[], T]) -> T:
    """Call function on a worker thread that has entered the namespace at path; wait for it.

    The workers are shared and long-lived (NetnsWorker), so a call costs tens of
    microseconds instead of a thread start. A call made from inside such a function runs
    on the same thread when it names the namespace that thread is in already, and on a
    fresh thread otherwise, so a nested call_in_netns never waits for a worker that waits
    for it.
    """
    if getattr(_current, "in_worker", False):
        if _is_current_netns(path):
            return function()
        return _call_on_fresh_thread(path, function)
    return SHARED_WORKER.call(path, function)


def _is_current_netns(path: Path) -> bool:
    """Tell whether this worker thread has entered the namespace at path already."""
    entered = getattr(_current, "netns_id", None)
    if entered is None:
        return False
    try:
        status = os.stat(path)
    except OSError:
        return False
    return (status.st_dev, status.st_ino) == entered


def _call_on_fresh_thread(path: Path, function: Callable[[], T]) -> T:
    """Call function on a new thread that enters the namespace and ends after the call."""
    result: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(_enter_and_call(path, function, on_leave_failure=None))
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread below
            failure.append(error)

    thread = threading.Thread(target=run, name=f"netns:{path.name}", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def _enter_and_call(path: Path, function: Callable[[], T], on_leave_failure: Callable[[], None] | None) -> T:
    """Enter the namespace at path on this thread, call function, and go back.

    A failed return raises, unless on_leave_failure is given: then it is called and the
    result is returned, because the function did run in the right namespace.
    """
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        try:
            # An open fd, never a path: pyroute2 creates a missing namespace by path.
            target = os.open(path, os.O_RDONLY)
        except OSError as error:
            raise NetnsEnterError(error.errno, f"cannot open network namespace {path}") from error
        try:
            pyroute2_netns.setns(target)
            entered = os.fstat(target)
        except OSError as error:
            raise NetnsEnterError(error.errno, f"cannot enter network namespace {path}") from error
        finally:
            os.close(target)
        _current.in_worker = True
        _current.netns_id = (entered.st_dev, entered.st_ino)
        try:
            return function()
        finally:
            _current.in_worker = False
            _current.netns_id = None
            try:
                pyroute2_netns.setns(original)
            except OSError:
                if on_leave_failure is None:
                    raise
                on_leave_failure()
    finally:
        os.close(original)


async def call_in_netns_async(path: Path, function: Callable[[], T]) -> T:
    """Await call_in_netns without blocking the event loop.

    The call goes to a shared worker directly, so no thread of the event loop's default
    executor waits for the worker.
    """
    return await SHARED_WORKER.call_async(path, function)


class NetnsWorker:
    """Long-lived threads that run short functions inside given namespaces.

    A thread enters the namespace for each call and goes back afterwards, which costs
    tens of microseconds, where starting a thread per call costs about a millisecond.
    Only functions given to this worker run on its threads, and each runs after its own
    setns, so a thread that failed to go back harms no later call. The worker still
    replaces its threads then, so they do not keep that namespace alive.
    """

    def __init__(self, name: str, max_threads: int = 1) -> None:
        self._name = name
        self._max_threads = max_threads
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None

    def call(self, path: Path, function: Callable[[], T]) -> T:
        """Call function inside the namespace at path on a worker thread; wait for it."""
        return self.submit(path, function).result()

    async def call_async(self, path: Path, function: Callable[[], T]) -> T:
        """Await function called inside the namespace at path on a worker thread."""
        return await asyncio.wrap_future(self.submit(path, function))

    def submit(self, path: Path, function: Callable[[], T]) -> Future[T]:
        """Queue a call of function inside the namespace at path; return its future."""
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self._max_threads, thread_name_prefix=self._name)
            executor = self._executor
        return executor.submit(_enter_and_call, path, function, lambda: self._retire(executor))

    def close(self) -> None:
        """End the worker's threads once their queued calls are done."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)

    def _retire(self, executor: ThreadPoolExecutor) -> None:
        with self._lock:
            if self._executor is executor:
                self._executor = None
        executor.shutdown(wait=False)


_current = threading.local()
# Worker threads for call_in_netns. Callers mostly come from asyncio.to_thread, whose
# default pool has min(32, CPUs + 4) threads, so more would seldom be used.
SHARED_THREADS = 8
SHARED_WORKER = NetnsWorker("netns", SHARED_THREADS)
