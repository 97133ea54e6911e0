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


def test_covered_in_sync_skipped() -> None:
    clock = Clock()
    book = AddressBook(clock)
    add(book, Learned("192.0.2.10", 305, "pypi.org", "dns"))
    clock.now += 2
    plan = book.plan_add([Learned("192.0.2.10", 305, "pypi.org", "dns")], slack=2.5, kernel_in_sync=True)
    assert plan.commands == []
    assert plan.skipped == ["192.0.2.10"]


def test_skip_keeps_expiry() -> None:
    clock = Clock()
    book = AddressBook(clock)
    add(book, Learned("192.0.2.10", 305, "pypi.org", "dns"))
    clock.now += 2
    book.commit_add(book.plan_add([Learned("192.0.2.10", 305, "*.pypi.org", "dns")], slack=2.5, kernel_in_sync=True))
    assert book.remaining_seconds(["192.0.2.10"]) == [("192.0.2.10", 303)]
    assert book.addresses_of("*.pypi.org")[0][0] == "192.0.2.10"


def test_covered_out_of_sync_added_plainly() -> None:
    clock = Clock()
    book = AddressBook(clock)
    add(book, Learned("192.0.2.10", 305, "pypi.org", "dns"))
    clock.now += 2
    plan = book.plan_add([Learned("192.0.2.10", 305, "pypi.org", "dns")], slack=2.5)
    assert [list(command) for command in plan.commands] == [["add"]]
    assert plan.commands[0]["add"]["element"]["elem"] == [{"elem": {"val": "192.0.2.10", "timeout": 303}}]
    assert plan.skipped == []


def test_slack_exceeded_refreshes() -> None:
    clock = Clock()
    book = AddressBook(clock)
    add(book, Learned("192.0.2.10", 305, "pypi.org", "dns"))
    clock.now += 3
    plan = book.plan_add([Learned("192.0.2.10", 305, "pypi.org", "dns")], slack=2.5, kernel_in_sync=True)
    assert [list(command) for command in plan.commands] == [["add"], ["delete"], ["add"]]
    assert plan.commands[2]["add"]["element"]["elem"][0]["elem"]["timeout"] == 305
    assert plan.skipped == []


def test_strict_cover_without_slack() -> None:
    clock = Clock()
    book = AddressBook(clock)
    add(book, Learned("192.0.2.10", 600, "pypi.org", "dns"))
    clock.now += 10
    covered = book.plan_add([Learned("192.0.2.10", 590, "pypi.org", "dns")], kernel_in_sync=True)
    extended = book.plan_add([Learned("192.0.2.10", 591, "pypi.org", "dns")], kernel_in_sync=True)
    assert covered.commands == []
    assert extended.commands[0]["add"]["element"]["elem"][0]["elem"]["timeout"] == 591


def test_expired_element_never_skipped() -> None:
    clock = Clock()
    book = AddressBook(clock)
    add(book, Learned("192.0.2.10", 5, "pypi.org", "dns"))
    clock.now += 6
    plan = book.plan_add([Learned("192.0.2.10", 5, "pypi.org", "dns")], slack=10, kernel_in_sync=True)
    assert plan.skipped == []
    assert plan.commands[0]["add"]["element"]["elem"][0]["elem"]["timeout"] == 5


def test_batch_takes_longest_timeout() -> None:
    book = AddressBook(Clock())
    plan = book.plan_add([Learned("192.0.2.10", 60, "pypi.org", "dns"), Learned("192.0.2.10", 600, "*.pypi.org", "dns")])
    assert plan.commands[0]["add"]["element"]["elem"] == [{"elem": {"val": "192.0.2.10", "timeout": 600}}]
    book.commit_add(plan)
    assert book.remaining_seconds(["192.0.2.10"]) == [("192.0.2.10", 600)]


def test_addresses_by_owner_matches_addresses_of() -> None:
    book = AddressBook(clock=lambda: 1000.0)
    plan = book.plan_add([
        Learned("192.0.2.2", 60, "pypi.org", "resolver"),
        Learned("192.0.2.1", 60, "pypi.org", "resolver"),
        Learned("192.0.2.3", 60, "*.pythonhosted.org", "dns"),
    ])
    book.commit_add(plan)

    owned = book.addresses_by_owner()

    assert owned["pypi.org"] == book.addresses_of("pypi.org")
    assert owned["*.pythonhosted.org"] == book.addresses_of("*.pythonhosted.org")
    assert [address for address, _, _ in owned["pypi.org"]] == ["192.0.2.1", "192.0.2.2"]
