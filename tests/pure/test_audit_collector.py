"""The NFLOG collector's bookkeeping: counter deltas, losses and a socket that fails to open."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path
from typing import Any

import pytest

from runtad.audit.collector import Collector, is_loopback
from runtad.audit.model import EgressEvent, Reason
from runtad.audit.recorder import Recorder
from runtad.nflog import LogRecord
from runtad.nft import NftContext, NftError

MISSING_NETNS = Path("/run/netns/runta-test-no-such-namespace")


class FakeNft:
    """Fake libnftables context: `list counter` returns the next listed value, None raises NftError."""

    def __init__(self, values: list[int | None]) -> None:
        self.values = values
        self.reads = 0

    async def run_async(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.reads += 1
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


def test_collector_idle_skips_counter_read() -> None:
    collector, events = make_collector([10, 10])
    collector._socket = object()  # type: ignore[assignment]  # an open NFLOG socket
    nft: FakeNft = collector.nft  # type: ignore[assignment]

    async def scenario() -> None:
        await collector.take_baseline()
        await collector.report_losses()

    asyncio.run(scenario())
    assert nft.reads == 1
    assert events == []


def test_collector_reads_counter_after_records() -> None:
    collector, events = make_collector([10, 30, 30, 30])
    collector._socket = object()  # type: ignore[assignment]
    nft: FakeNft = collector.nft  # type: ignore[assignment]

    async def scenario() -> None:
        await collector.take_baseline()
        collector.on_records([], 0)
        for _ in range(3):
            await collector.report_losses()

    asyncio.run(scenario())
    assert nft.reads == 3  # the baseline and the two polls after the records
    assert [(event.reason, event.count) for event in events] == [(Reason.EVENTS_SUPPRESSED, 20)]


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


def loopback_record(dst: str, family: int) -> LogRecord:
    return LogRecord(
        "runta deny ", family, "udp", "10.213.0.2", dst, 40000, 53, None, None, 1, None
    )


@pytest.mark.parametrize(
    ("dst", "family"), [("127.0.0.1", 4), ("127.255.0.9", 4), ("::1", 6)]
)
def test_loopback_destinations_match(dst: str, family: int) -> None:
    record = loopback_record(dst, family)
    assert is_loopback(record)
    assert ipaddress.ip_address(dst).is_loopback


@pytest.mark.parametrize(
    ("dst", "family"),
    [
        ("128.0.0.1", 4),
        ("10.127.0.1", 4),
        ("::ffff:127.0.0.1", 6),
        ("::127.0.0.1", 6),
        ("127::1", 6),
    ],
)
def test_other_destinations_not_loopback(dst: str, family: int) -> None:
    record = loopback_record(dst, family)
    assert not is_loopback(record)
    assert not ipaddress.ip_address(dst).is_loopback


def test_name_of_empty_map_is_none() -> None:
    recorder = Recorder("sb1", lambda event: True)
    assert recorder.name_of("198.51.100.7") is None


def test_name_of_learned_address() -> None:
    recorder = Recorder("sb1", lambda event: True)
    recorder.learn_names("example.com", [("2001:db8::7", 300)])
    assert recorder.name_of("2001:db8::7") == "example.com"
    assert recorder.name_of("198.51.100.7") is None
