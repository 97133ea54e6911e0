"""Run a short function inside another network namespace, on a worker thread.

A socket or libnftables context keeps the namespace of the thread that created it, so
the daemon creates per-sandbox sockets and contexts here and uses them from its single
event loop. The event-loop thread itself never switches namespace.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Callable, TypeVar

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
    """Call function on a fresh thread that has entered the namespace at path.

    The thread returns to its original namespace before it ends. If that return fails
    the thread still ends, so no thread of this process stays in the wrong namespace.
    """
    result: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            try:
                # An open fd, never a path: pyroute2 creates a missing namespace by path.
                target = os.open(path, os.O_RDONLY)
            except OSError as error:
                raise NetnsEnterError(error.errno, f"cannot open network namespace {path}") from error
            try:
                pyroute2_netns.setns(target)
            except OSError as error:
                raise NetnsEnterError(error.errno, f"cannot enter network namespace {path}") from error
            finally:
                os.close(target)
            try:
                result.append(function())
            finally:
                pyroute2_netns.setns(original)
        except BaseException as error:  # handed to the caller's thread below
            failure.append(error)
        finally:
            os.close(original)

    thread = threading.Thread(target=run, name=f"netns:{path.name}", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


async def call_in_netns_async(path: Path, function: Callable[[], T]) -> T:
    """Await call_in_netns without blocking the event loop."""
    return await asyncio.to_thread(call_in_netns, path, function)
