"""Folding of repeated events: identical decisions inside a window become one with a count."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from .model import EgressEvent, FoldKey

Clock = Callable[[], float]


@dataclasses.dataclass
class _Pending:
    event: EgressEvent
    count: int
    deadline: float


class Folder:
    """Hold each new event for `window` seconds and count its repeats in that time.

    Every event waits the same window, so insertion order is deadline order and the due
    events are always at the front. With more than max_pending events held, the oldest
    are released early.
    """

    def __init__(self, window: float, max_pending: int, clock: Clock = time.monotonic) -> None:
        if window < 0:
            raise ValueError(f"fold window must be 0 or more seconds, not {window}")
        self.window = window
        self.max_pending = max(1, max_pending)
        self._clock = clock
        self._pending: dict[FoldKey, _Pending] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, event: EgressEvent) -> None:
        key = event.fold_key
        held = self._pending.get(key)
        if held is not None:
            held.count += event.count
            return
        self._pending[key] = _Pending(event, event.count, self._clock() + self.window)

    def next_deadline(self) -> float | None:
        """Return the clock time at which the oldest held event is due, or None."""
        for held in self._pending.values():
            return held.deadline
        return None

    def pop_due(self) -> list[EgressEvent]:
        """Release the events whose window has ended, oldest first."""
        now = self._clock()
        due: list[EgressEvent] = []
        while self._pending:
            key, held = next(iter(self._pending.items()))
            if held.deadline > now and len(self._pending) <= self.max_pending:
                break
            del self._pending[key]
            due.append(_folded(held))
        return due

    def pop_all(self) -> list[EgressEvent]:
        """Release every held event, oldest first."""
        released = [_folded(held) for held in self._pending.values()]
        self._pending.clear()
        return released


def _folded(held: _Pending) -> EgressEvent:
    if held.count == held.event.count:
        return held.event
    return dataclasses.replace(held.event, count=held.count)
