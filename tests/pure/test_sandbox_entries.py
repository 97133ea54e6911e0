"""Sandbox.entries formats each element's own expiry, also when expiries repeat."""

from __future__ import annotations

import asyncio

from runtad.addressbook import AddressBook, Learned
from runtad.sandbox import _iso
from tests.pure.test_sandbox_views import make_sandbox


def test_entries_timestamps_per_element() -> None:
    async def build() -> list[dict]:
        sandbox = make_sandbox(["a.example.test", "b.example.test"])
        sandbox.book = AddressBook(clock=lambda: 1767225600.0)
        plan = sandbox.book.plan_add([
            Learned("192.0.2.1", 60, "a.example.test", "resolver"),
            Learned("192.0.2.2", 60, "b.example.test", "resolver"),
            Learned("192.0.2.3", 90, "b.example.test", "dns"),
        ])  # fmt: skip
        sandbox.book.commit_add(plan)
        return sandbox.entries()

    rows = {row["host"]: row for row in asyncio.run(build())}
    assert rows["a.example.test"]["addresses"][0]["expires_at"] == _iso(1767225660.0)
    b_addresses = rows["b.example.test"]["addresses"]
    assert [item["expires_at"] for item in b_addresses] == [_iso(1767225660.0), _iso(1767225690.0)]
    assert [item["source"] for item in b_addresses] == ["resolver", "dns"]
