"""Cache of a host's addresses for the gateway's destination check, with a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from runtad.gateway.addresscache import NameAddressCache, NameResolutionError
from runtad.resolver import Resolution


class FakeResolver:
    """Resolver that returns scripted resolutions, one per lookup, repeating the last."""

    def __init__(self, *answers: tuple[tuple[str, int], ...]) -> None:
        self.answers = list(answers)
        self.calls: list[str] = []

    async def __call__(self, host: str) -> Resolution:
        self.calls.append(host)
        await asyncio.sleep(0)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if not answer:
            return Resolution(host, (), "A lookup returned NXDOMAIN")
        return Resolution(host, answer, None)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cache(resolver: FakeResolver, clock: Clock, **options: int) -> NameAddressCache:
    return NameAddressCache(resolver, clock=clock, **options)  # type: ignore[arg-type]


def lookup(store: NameAddressCache, host: str, fresh: bool = False) -> dict[str, int]:
    return asyncio.run(store.addresses_for(host, fresh=fresh))


def test_cache_hit_skips_upstream() -> None:
    resolver, clock = FakeResolver((("192.0.2.10", 300),)), Clock()
    store = cache(resolver, clock)
    assert lookup(store, "pypi.org") == {"192.0.2.10": 300}
    clock.now += 100
    assert lookup(store, "pypi.org") == {"192.0.2.10": 200}
    assert resolver.calls == ["pypi.org"]


def test_cache_expiry_looks_up_again() -> None:
    resolver, clock = FakeResolver((("192.0.2.10", 60),)), Clock()
    store = cache(resolver, clock)
    lookup(store, "pypi.org")
    clock.now += 61
    lookup(store, "pypi.org")
    assert resolver.calls == ["pypi.org", "pypi.org"]


def test_rotating_answers_accumulate() -> None:
    resolver = FakeResolver((("192.0.2.10", 60),), (("192.0.2.11", 60),))
    clock = Clock()
    store = cache(resolver, clock)
    lookup(store, "cdn.test")
    clock.now += 2
    assert set(lookup(store, "cdn.test", fresh=True)) == {"192.0.2.10", "192.0.2.11"}


def test_fresh_lookup_rate_limited() -> None:
    resolver, clock = FakeResolver((("192.0.2.10", 60),)), Clock()
    store = cache(resolver, clock)
    lookup(store, "pypi.org")
    clock.now += 0.5
    lookup(store, "pypi.org", fresh=True)
    assert len(resolver.calls) == 1


def test_ttl_bounded_below() -> None:
    resolver, clock = FakeResolver((("192.0.2.10", 0),)), Clock()
    assert lookup(cache(resolver, clock, min_ttl=30), "pypi.org") == {"192.0.2.10": 30}


def test_ipv6_spelling_normalised() -> None:
    resolver, clock = FakeResolver((("2001:DB8:0::11", 60),)), Clock()
    assert list(lookup(cache(resolver, clock), "pypi.org")) == ["2001:db8::11"]


def test_unresolvable_name_raises() -> None:
    resolver, clock = FakeResolver(()), Clock()
    with pytest.raises(NameResolutionError) as caught:
        lookup(cache(resolver, clock), "nowhere.test")
    assert caught.value.host == "nowhere.test"
    assert "NXDOMAIN" in str(caught.value)


def test_failed_refresh_keeps_live_addresses() -> None:
    resolver = FakeResolver((("192.0.2.10", 300),), ())
    clock = Clock()
    store = cache(resolver, clock)
    lookup(store, "pypi.org")
    clock.now += 5
    assert lookup(store, "pypi.org", fresh=True) == {"192.0.2.10": 295}


def test_size_bound_evicts_oldest() -> None:
    resolver, clock = FakeResolver((("192.0.2.10", 300),)), Clock()
    store = cache(resolver, clock, max_names=3)
    for name in ("a.test", "b.test", "c.test", "d.test"):
        lookup(store, name)
    assert len(store) == 3
    lookup(store, "a.test")
    assert resolver.calls.count("a.test") == 2


def test_concurrent_lookups_share_one_query() -> None:
    resolver, clock = FakeResolver((("192.0.2.10", 300),)), Clock()
    store = cache(resolver, clock)

    async def body() -> list[dict[str, int]]:
        return await asyncio.gather(*(store.addresses_for("pypi.org") for _ in range(50)))

    results = asyncio.run(body())
    assert all(result == {"192.0.2.10": 300} for result in results)
    assert resolver.calls == ["pypi.org"]
