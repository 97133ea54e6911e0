"""The NFLOG collector's bookkeeping: counter deltas, losses and a socket that fails to open."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from runtad.audit.collector import Collector
from runtad.audit.model import EgressEvent, Reason
from runtad.audit.recorder import Recorder
from runtad.nft import NftContext, NftError

MISSING_NETNS = Path("/run/netns/runta-test-no-such-namespace")


class FakeNft:
    """Fake libnftables context: `list counter` returns the next listed value, None raises NftError."""

    def __init__(self, values: list[int | None]) -> None:
        self.values = values

    async def run_async(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        value = self.values.pop(0) if len(self.values) > 1 else self.values[0]
        if value is None:
            raise NftError("test", "No such file or directory")
        return [{"counter": {"family": "inet", "table": "runta", "name": "log_suppressed", "packets": value}}]


def make_collector(values: list[int | None]) -> tuple[Collector, list[EgressEvent]]:
    events: list[EgressEvent] = []

    def submit(event: EgressEvent) -> bool:
        events.append(event)
        return True

    nft: NftContext = FakeNft(values)  # type: ignore[assignment]
    collector = Collector(Recorder("sb1", submit), MISSING_NETNS, 7, nft, poll_seconds=3600)
    return collector, events


def test_collector_reports_counter_increase() -> None:
    collector, events = make_collector([10, 25])

    async def scenario() -> None:
        await collector.take_baseline()
        await collector.report_losses()

    asyncio.run(scenario())
    assert [(event.reason, event.count) for event in events] == [(Reason.EVENTS_SUPPRESSED, 15)]


def test_collector_counter_restart_counts_new_value() -> None:
    collector, events = make_collector([500, 7])

    async def scenario() -> None:
        await collector.take_baseline()
        await collector.report_losses()

    asyncio.run(scenario())
    assert [event.count for event in events] == [7]


def test_collector_reports_lost_records() -> None:
    collector, events = make_collector([0])
    collector.on_records([], 3)
    asyncio.run(collector.report_losses())
    assert [(event.reason, event.count) for event in events] == [(Reason.EVENTS_LOST, 3)]


def test_collector_quiet_without_losses() -> None:
    collector, events = make_collector([4])

    async def scenario() -> None:
        await collector.take_baseline()
        await collector.report_losses()

    asyncio.run(scenario())
    assert events == []


def test_collector_survives_missing_netns() -> None:
    collector, events = make_collector([None])

    async def scenario() -> None:
        await collector.start()
        await collector.stop()

    asyncio.run(scenario())
    assert events == []
