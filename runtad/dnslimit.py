"""Per-sandbox limits on DNS queries, so that one sandbox's flood cannot starve the others.

All sandboxes share runtad's event loop and its upstream servers. A sandbox may ask at
most `rate` queries per second on average (bursts up to `burst`) and have at most
`max_pending` questions waiting for the upstream at once. A query over either limit
gets SERVFAIL at once, without an upstream query, and is counted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum


class Limit(str, Enum):
    """The limit a query is over."""

    RATE = "rate"  # more than rate queries per second
    PENDING = "pending"  # max_pending questions already wait for the upstream


class QueryLimiter:
    """A token bucket for queries and a count of questions waiting upstream.

    rate 0 turns the rate limit off; max_pending 0 turns the pending limit off.
    """

    def __init__(
        self, rate: float, burst: int, max_pending: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = max(burst, 1)
        self.max_pending = max_pending
        self.pending = 0
        self.limited = 0
        self._clock = clock
        self._tokens = float(self.burst)
        self._updated = clock()

    def admit(self) -> Limit | None:
        """Take a token for one query; return why it is refused, or None."""
        if self.rate > 0:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            if self._tokens < 1:
                self.limited += 1
                return Limit.RATE
            self._tokens -= 1
        return None

    def begin_upstream(self) -> Limit | None:
        """Count one question sent upstream; return PENDING if too many already wait."""
        if self.max_pending and self.pending >= self.max_pending:
            self.limited += 1
            return Limit.PENDING
        self.pending += 1
        return None

    def end_upstream(self) -> None:
        self.pending -= 1
