"""Per-sandbox DNS limits: token bucket and pending upstream questions."""

from __future__ import annotations

from runtad.dnslimit import QueryLimiter, Limit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refused() -> None:
    limiter = QueryLimiter(rate=10, burst=3, max_pending=0, clock=Clock())
    assert [limiter.admit() for _ in range(4)] == [None, None, None, Limit.RATE]
    assert limiter.limited == 1


def test_tokens_refill_with_time() -> None:
    clock = Clock()
    limiter = QueryLimiter(rate=10, burst=2, max_pending=0, clock=clock)
    limiter.admit()
    limiter.admit()
    clock.now += 0.15
    assert limiter.admit() is None
    assert limiter.admit() is Limit.RATE


def test_refill_capped_at_burst() -> None:
    clock = Clock()
    limiter = QueryLimiter(rate=1000, burst=2, max_pending=0, clock=clock)
    clock.now += 60
    assert [limiter.admit() for _ in range(3)] == [None, None, Limit.RATE]


def test_rate_zero_unlimited() -> None:
    limiter = QueryLimiter(rate=0, burst=1, max_pending=0, clock=Clock())
    assert all(limiter.admit() is None for _ in range(10_000))


def test_pending_limit() -> None:
    limiter = QueryLimiter(rate=0, burst=1, max_pending=2)
    assert limiter.begin_upstream() is None
    assert limiter.begin_upstream() is None
    assert limiter.begin_upstream() is Limit.PENDING
    limiter.end_upstream()
    assert limiter.begin_upstream() is None
    assert limiter.pending == 2
