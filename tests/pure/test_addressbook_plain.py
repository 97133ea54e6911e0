"""AddressBook.plan_add writes addresses new to an in-sync kernel with a plain add."""

from __future__ import annotations

from runtad.addressbook import PRUNED_MEMORY_SECONDS, AddressBook, Learned


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def verbs(commands: list[dict]) -> list[str]:
    return [verb for command in commands for verb in command]


def timeouts(commands: list[dict]) -> dict[str, int]:
    return {
        item["elem"]["val"]: item["elem"]["timeout"]
        for command in commands if "add" in command
        for item in command["add"]["element"]["elem"]
    }  # fmt: skip


def add(book: AddressBook, *learned: Learned) -> None:
    book.commit_add(book.plan_add(learned))


def expire_and_prune(book: AddressBook, clock: Clock, seconds: float) -> None:
    clock.now += seconds
    book.prune()


def test_plain_add_new_in_sync() -> None:
    book = AddressBook(Clock())
    plan = book.plan_add(
        [Learned("2001:db8::10", 300, "pypi.org", "resolver")], kernel_in_sync=True
    )
    assert verbs(plan.commands) == ["add"]
    assert timeouts(plan.commands) == {"2001:db8::10": 300}


def test_plain_add_new_out_of_sync_refreshes() -> None:
    book = AddressBook(Clock())
    plan = book.plan_add([Learned("2001:db8::10", 300, "pypi.org", "resolver")])
    assert verbs(plan.commands) == ["add", "delete", "add"]


def test_plain_add_mixed_batch() -> None:
    clock = Clock()
    book = AddressBook(clock)
    add(book, Learned("192.0.2.10", 60, "pypi.org", "dns"))
    clock.now += 30
    plan = book.plan_add(
        [
            Learned("192.0.2.10", 60, "pypi.org", "dns"),
            Learned("192.0.2.11", 60, "pypi.org", "dns"),
        ],
        kernel_in_sync=True,
    )
    assert verbs(plan.commands) == ["add", "delete", "add", "add"]
    assert plan.commands[0]["add"]["element"]["elem"] == [
        {"elem": {"val": "192.0.2.10", "timeout": 60}}
    ]
    assert plan.commands[3]["add"]["element"]["elem"] == [
        {"elem": {"val": "192.0.2.11", "timeout": 60}}
    ]


def test_plain_add_recently_pruned_refreshes() -> None:
    clock = Clock()
    book = AddressBook(clock)
    add(book, Learned("192.0.2.10", 5, "pypi.org", "dns"))
    expire_and_prune(book, clock, 6)
    assert len(book) == 0
    plan = book.plan_add([Learned("192.0.2.10", 60, "pypi.org", "dns")], kernel_in_sync=True)
    assert verbs(plan.commands) == ["add", "delete", "add"]


def test_plain_add_long_pruned() -> None:
    clock = Clock()
    book = AddressBook(clock)
    add(book, Learned("192.0.2.10", 5, "pypi.org", "dns"))
    expire_and_prune(book, clock, 6)
    expire_and_prune(book, clock, PRUNED_MEMORY_SECONDS)
    plan = book.plan_add([Learned("192.0.2.10", 60, "pypi.org", "dns")], kernel_in_sync=True)
    assert verbs(plan.commands) == ["add"]


def test_plain_add_commits_expiry() -> None:
    clock = Clock()
    book = AddressBook(clock)
    book.commit_add(
        book.plan_add([Learned("192.0.2.10", 60, "pypi.org", "dns")], kernel_in_sync=True)
    )
    assert book.remaining_seconds(["192.0.2.10"]) == [("192.0.2.10", 60)]
    assert book.addresses_of("pypi.org") == [("192.0.2.10", 1060.0, "dns")]
