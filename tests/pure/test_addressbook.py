"""The allow-set mirror: expiries never shorten, removal deletes only orphans."""

from __future__ import annotations

from runtad.addressbook import AddressBook, Learned


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def add(book: AddressBook, *learned: Learned) -> list[dict]:
    plan = book.plan_add(learned)
    book.commit_add(plan)
    return plan.commands


def test_timeout_never_shortened() -> None:
    clock = Clock()
    book = AddressBook(clock)
    add(book, Learned("192.0.2.10", 600, "pypi.org", "dns"))
    clock.now += 10
    commands = add(book, Learned("192.0.2.10", 30, "pypi.org", "dns"))
    assert commands[0]["add"]["element"]["elem"][0]["elem"]["timeout"] == 590


def test_timeout_extended_by_later_answer() -> None:
    clock = Clock()
    book = AddressBook(clock)
    add(book, Learned("192.0.2.10", 60, "pypi.org", "dns"))
    clock.now += 55
    commands = add(book, Learned("192.0.2.10", 60, "pypi.org", "dns"))
    assert commands[0]["add"]["element"]["elem"][0]["elem"]["timeout"] == 60


def test_removal_keeps_shared_address() -> None:
    book = AddressBook(Clock())
    add(book, Learned("192.0.2.40", 300, "pypi.org", "dns"), Learned("192.0.2.40", 300, "*.cdn.test", "dns"),
        Learned("192.0.2.41", 300, "*.cdn.test", "dns"))
    commands, orphans = book.plan_remove_patterns({"*.cdn.test"})
    assert orphans == ["192.0.2.41"]
    book.commit_remove_patterns({"*.cdn.test"}, orphans)
    assert book.addresses_of("pypi.org")[0][0] == "192.0.2.40"
    assert book.addresses_of("*.cdn.test") == []


def test_expired_elements_pruned() -> None:
    clock = Clock()
    book = AddressBook(clock)
    add(book, Learned("192.0.2.10", 5, "pypi.org", "dns"))
    clock.now += 6
    assert not book.is_allowed("192.0.2.10")
    book.prune()
    assert len(book) == 0


def test_resolver_source_kept_over_dns() -> None:
    book = AddressBook(Clock())
    add(book, Learned("192.0.2.10", 300, "pypi.org", "resolver"))
    add(book, Learned("192.0.2.10", 300, "pypi.org", "dns"))
    assert book.addresses_of("pypi.org")[0][2] == "resolver"
