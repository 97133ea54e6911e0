"""Descriptors below 1024 kept free for libnftables.

libnftables 1.0.6 (Debian 12) waits for kernel replies with select(), which cannot watch
a descriptor of 1024 or above: glibc aborts the process ("bit out of range 0 - FD_SETSIZE
on fd_set"). runtad keeps up to a pool's capacity of contexts open (nftpool.py) and
several sockets per sandbox besides, so at start it fills the low range with
placeholders (/dev/null). Every other descriptor then lands at 1024 or above. nft.py
moves a new context's socket onto a placeholder's number with dup2 (take), and puts a
placeholder back there before the context is freed (give_back), so no low slot is ever
free for another thread to take.
"""

from __future__ import annotations

import bisect
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
        self._filled = False
        self._lock = threading.Lock()

    def fill(self) -> int:
        """Reserve every free descriptor below FD_SETSIZE - SPARE_LOW; return how many."""
        with self._lock:
            self._filled = True
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
            self._filled = False

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

    def take(self) -> int | None:
        """Remove the lowest placeholder from the reserve and return its number, still open.

        The caller replaces it with dup2 and hands it back with give_back. Returns None
        without a reserve (fill never called); raises when the reserve is empty.
        """
        with self._lock:
            if not self._filled:
                return None
            if not self._placeholders:
                raise LowDescriptorsExhausted(
                    "no descriptor below 1024 is left for another nftables context, although"
                    " the context pool keeps far fewer open than are reserved: restart runtad"
                )
            return self._placeholders.pop(0)

    def give_back(self, fd: int) -> None:
        """Make fd a placeholder again; dup2 closes what fd referred to, atomically."""
        with self._lock:
            if not self._filled:
                os.close(fd)
                return
            placeholder = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.dup2(placeholder, fd, inheritable=False)
            finally:
                os.close(placeholder)
            bisect.insort(self._placeholders, fd)

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
