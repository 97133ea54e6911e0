"""The address → host name map that names the destinations of kernel events."""

from __future__ import annotations

from runtad.audit.names import NameMap
from tests.pure.audit_helpers import FakeClock


def test_names_lookup_learned_address() -> None:
    names = NameMap(clock=FakeClock())
    names.learn("pypi.org", [("192.0.2.10", 300)])
    assert names.lookup("192.0.2.10") == "pypi.org"


def test_names_unknown_address_is_none() -> None:
    names = NameMap(clock=FakeClock())
    assert names.lookup("198.51.100.7") is None


def test_names_ipv6_spelling_normalized() -> None:
    names = NameMap(clock=FakeClock())
    names.learn("pypi.org", [("2001:DB8:0:0::10", 300)])
    assert names.lookup("2001:db8::10") == "pypi.org"


def test_names_expire_after_ttl() -> None:
    clock = FakeClock()
    names = NameMap(min_seconds=60, clock=clock)
    names.learn("pypi.org", [("192.0.2.10", 600)])
    clock.advance(599)
    assert names.lookup("192.0.2.10") == "pypi.org"
    clock.advance(1)
    assert names.lookup("192.0.2.10") is None


def test_names_short_ttl_kept_minimum() -> None:
    clock = FakeClock()
    names = NameMap(min_seconds=300, clock=clock)
    names.learn("pypi.org", [("192.0.2.10", 5)])
    clock.advance(299)
    assert names.lookup("192.0.2.10") == "pypi.org"
    clock.advance(2)
    assert names.lookup("192.0.2.10") is None


def test_names_long_ttl_capped() -> None:
    clock = FakeClock()
    names = NameMap(max_seconds=3600, clock=clock)
    names.learn("pypi.org", [("192.0.2.10", 86400)])
    clock.advance(3600)
    assert names.lookup("192.0.2.10") is None


def test_names_bound_evicts_least_recent() -> None:
    names = NameMap(max_entries=2, clock=FakeClock())
    names.learn("a.test", [("192.0.2.1", 300)])
    names.learn("b.test", [("192.0.2.2", 300)])
    names.learn("a.test", [("192.0.2.1", 300)])  # refreshed: now the most recent
    names.learn("c.test", [("192.0.2.3", 300)])
    assert len(names) == 2
    assert names.lookup("192.0.2.2") is None
    assert names.lookup("192.0.2.1") == "a.test"
    assert names.lookup("192.0.2.3") == "c.test"


def test_names_latest_answer_wins() -> None:
    names = NameMap(clock=FakeClock())
    names.learn("a.test", [("192.0.2.40", 300)])
    names.learn("b.test", [("192.0.2.40", 300)])
    assert names.lookup("192.0.2.40") == "b.test"


def test_names_prune_drops_expired() -> None:
    clock = FakeClock()
    names = NameMap(min_seconds=10, max_seconds=10, clock=clock)
    names.learn("a.test", [("192.0.2.1", 10), ("192.0.2.2", 10)])
    clock.advance(10)
    assert names.prune() == 2
    assert len(names) == 0


def test_names_skip_invalid_address() -> None:
    names = NameMap(clock=FakeClock())
    names.learn("a.test", [("not-an-address", 300)])
    assert len(names) == 0


def test_names_full_map_drops_expired_first() -> None:
    clock = FakeClock()
    names = NameMap(max_entries=2, min_seconds=10, max_seconds=600, clock=clock)
    names.learn("long.test", [("192.0.2.2", 600)])
    names.learn("short.test", [("192.0.2.1", 10)])  # refreshed last, but expired below
    clock.advance(20)
    names.learn("new.test", [("192.0.2.3", 600)])
    assert names.lookup("192.0.2.2") == "long.test"
    assert names.lookup("192.0.2.3") == "new.test"
    assert len(names) == 2
