"""Descriptors below 1024 kept free for libnftables.

libnftables 1.0.6 (Debian 12) waits for kernel replies with select(), which cannot watch
a descriptor of 1024 or above: glibc aborts the process ("bit out of range 0 - FD_SETSIZE
on fd_set"). runtad keeps one context open per sandbox and many other descriptors
besides, so at start it fills the low range with placeholders (/dev/null). Every other
descriptor then lands at 1024 or above, and a new context gets a placeholder's slot.
"""

from __future__ import annotations

import os
import threading
from typing import Callable, TypeVar

from .errors import RuntadError

T = TypeVar("T")

FD_SETSIZE = 1024
# Low descriptors left unreserved for libraries that open files briefly at start.
SPARE_LOW = 8
# A context's creation also opens two namespace descriptors for a moment (netns.py), and
# another thread may take a released slot meanwhile.
RELEASED_PER_OPEN = 8


class LowDescriptorsExhausted(RuntadError):
    """Every reserved descriptor below 1024 is in use by an nftables context."""

    code = "pool_exhausted"
    status = 503


class LowDescriptorReserve:
    def __init__(self) -> None:
        self._placeholders: list[int] = []
        self._lock = threading.Lock()

    def fill(self) -> int:
        """Reserve every free descriptor below FD_SETSIZE - SPARE_LOW; return how many."""
        with self._lock:
            while True:
                fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
                if fd >= FD_SETSIZE - SPARE_LOW:
                    os.close(fd)
                    break
                self._placeholders.append(fd)
            return len(self._placeholders)

    def close(self) -> None:
        """Give every placeholder back."""
        with self._lock:
            for fd in self._placeholders:
                os.close(fd)
            self._placeholders.clear()

    @property
    def available(self) -> int:
        return len(self._placeholders)

    def open_low(self, create: Callable[[], T]) -> T:
        """Call create, which opens one long-lived descriptor, with low slots free for it.

        Without a reserve (fill never called) create runs as it is.
        """
        with self._lock:
            if not self._placeholders:
                return create()
            if len(self._placeholders) < RELEASED_PER_OPEN:
                raise LowDescriptorsExhausted(
                    "no descriptor below 1024 is left for another nftables context, so this"
                    " runtad serves as many sandboxes as it can: delete unused sandboxes"
                    " or spread them over more hosts"
                )
            # Release the highest placeholders, so the lowest ones stay reserved.
            released = [self._placeholders.pop() for _ in range(RELEASED_PER_OPEN)]
            for fd in released:
                os.close(fd)
            try:
                return create()
            finally:
                self._refill(len(released))

    def top_up(self) -> None:
        """Reserve again the low descriptors that closed contexts gave back."""
        with self._lock:
            if self._placeholders:
                self._refill(FD_SETSIZE)

    def _refill(self, count: int) -> None:
        for _ in range(count):
            fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            if fd >= FD_SETSIZE - SPARE_LOW:
                os.close(fd)
                return
            self._placeholders.append(fd)
        self._placeholders.sort()


RESERVE = LowDescriptorReserve()
