"""Sandbox.entries and the timestamps it shows, without a kernel."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from runtad.addressbook import Learned
from runtad.config import Config
from runtad.hosts import parse_rules
from runtad.sandbox import Sandbox, _iso
from runtad.store import PolicyRecord, RuntimeRecord
from runtad.upstream import Upstream


def datetime_iso(timestamp: float) -> str:
    text = datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def make_sandbox(hosts: list[str]) -> Sandbox:
    record = RuntimeRecord(1, "views", "/run/netns/none", True, None, None, "2026-01-01T00:00:00Z")
    policy = PolicyRecord(True, tuple(hosts), 1)
    return Sandbox(record, policy, parse_rules(hosts), Config(), Upstream((), 1.0), {})


def learn(sandbox: Sandbox, *learned: Learned) -> None:
    plan = sandbox.book.plan_add(learned)
    sandbox.book.commit_add(plan)


def test_iso_matches_datetime():
    for timestamp in (0.0, 1.0005, 1767225600.123456, 1767225600.9999, 1798761599.999):
        assert _iso(timestamp) == datetime_iso(timestamp)


def test_iso_format():
    assert _iso(1767225600.25) == "2026-01-01T00:00:00.250Z"


def test_entries_group_by_owner():
    async def build() -> list[dict]:
        sandbox = make_sandbox(["a.example.test", "b.example.test", "*.wild.example.test"])
        learn(
            sandbox,
            Learned("192.0.2.2", 60, "a.example.test", "resolver"),
            Learned("192.0.2.1", 60, "a.example.test", "resolver"),
            Learned("192.0.2.1", 60, "*.wild.example.test", "dns"),
        )
        return sandbox.entries()

    rows = {row["host"]: row for row in asyncio.run(build())}
    assert [item["address"] for item in rows["a.example.test"]["addresses"]] == ["192.0.2.1", "192.0.2.2"]
    assert rows["a.example.test"]["status"] == "resolved"
    assert rows["b.example.test"]["status"] == "unresolved"
    assert rows["b.example.test"]["addresses"] == []
    assert rows["*.wild.example.test"]["status"] == "wildcard"
    assert rows["*.wild.example.test"]["addresses"][0]["source"] == "dns"


def test_entries_skip_expired():
    async def build() -> list[dict]:
        sandbox = make_sandbox(["a.example.test"])
        learn(sandbox, Learned("192.0.2.1", 60, "a.example.test", "resolver"))
        sandbox.book._elements["192.0.2.1"].expires_at = 1.0
        return sandbox.entries()

    (row,) = asyncio.run(build())
    assert row["addresses"] == []
    assert row["status"] == "unresolved"
