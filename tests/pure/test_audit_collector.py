"""The NFLOG collector's bookkeeping: counter deltas, losses and a socket that fails to open."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from runtad.audit.collector import Collector, PreparedLog, counters_from, is_loopback
from runtad.audit.model import EgressEvent, Reason
from runtad.audit.recorder import Recorder
from runtad.nflog import LogRecord, NflogStats
from runtad.nft import NftContext, NftError

MISSING_NETNS = Path("/run/netns/runta-test-no-such-namespace")


def counter_item(name: str, packets: int) -> dict[str, Any]:
    return {"counter": {"family": "inet", "table": "runta", "name": name, "packets": packets}}


class FakeNft:
    """Fake libnftables context: `list counters` returns the next listed values.

    A None value of log_suppressed raises NftError. The log_reached values are listed only
    when `reached` is given.
    """

    def __init__(self, values: list[int | None], reached: list[int] | None = None) -> None:
        self.values = values
        self.reached = reached
        self.reads = 0

    async def run_async(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.reads += 1
        value = self.values.pop(0) if len(self.values) > 1 else self.values[0]
        if value is None:
            raise NftError("test", "No such file or directory")
        output = [counter_item("log_suppressed", value)]
        if self.reached is not None:
            reached = self.reached.pop(0) if len(self.reached) > 1 else self.reached[0]
            output.append(counter_item("log_reached", reached))
        return output


@dataclass
class FakeSocket:
    """An open NFLOG socket with nothing to read, whose stats the test sets."""

    stats: NflogStats = field(default_factory=NflogStats)

    def read_pending(self) -> tuple[list[LogRecord], int]:
        return [], 0


def make_collector(
    values: list[int | None], reached: list[int] | None = None
) -> tuple[Collector, list[EgressEvent]]:
    events: list[EgressEvent] = []

    def submit(event: EgressEvent) -> bool:
        events.append(event)
        return True

    nft: NftContext = FakeNft(values, reached)  # type: ignore[assignment]
    collector = Collector(Recorder("sb1", submit), MISSING_NETNS, 7, nft, poll_seconds=3600)
    return collector, events


def denied_records(count: int) -> list[LogRecord]:
    return [
        LogRecord("runta deny ", 4, "udp", "10.213.0.2", "198.51.100.7", 40000, 1024 + index,
                  None, None, index, None)
        for index in range(count)
    ]


def reasons_and_counts(events: list[EgressEvent]) -> list[tuple[Reason, int]]:
    return [(event.reason, event.count) for event in events]


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


def test_collector_reports_sequence_gaps() -> None:
    collector, events = make_collector([0])
    sock = FakeSocket()
    collector._socket = sock  # type: ignore[assignment]
    sock.stats.seq_gaps = 3
    collector.on_records([], 3)
    asyncio.run(collector.report_losses())
    assert reasons_and_counts(events) == [(Reason.EVENTS_LOST, 3)]


def test_collector_overrun_alone_not_counted() -> None:
    collector, events = make_collector([0])
    sock = FakeSocket()
    collector._socket = sock  # type: ignore[assignment]
    sock.stats.overruns = 1
    collector.on_records([], 1)
    asyncio.run(collector.report_losses())
    assert events == []


def test_collector_reports_unreceived_logged_packets() -> None:
    collector, events = make_collector([0], reached=[100, 150])
    collector._socket = FakeSocket()  # type: ignore[assignment]

    async def scenario() -> None:
        await collector.take_baseline()
        collector.on_records(denied_records(20), 1)
        await collector.report_losses()

    asyncio.run(scenario())
    lost = [event.count for event in events if event.reason == Reason.EVENTS_LOST]
    stored = [event for event in events if event.reason == Reason.DIRECT_IP_NOT_ALLOWED]
    assert lost == [30]
    assert len(stored) == 20


def test_collector_gaps_not_counted_twice() -> None:
    collector, events = make_collector([0], reached=[0, 50])
    sock = FakeSocket()
    collector._socket = sock  # type: ignore[assignment]

    async def scenario() -> None:
        await collector.take_baseline()
        sock.stats.seq_gaps = 10
        collector.on_records(denied_records(30), 10)
        await collector.report_losses()

    asyncio.run(scenario())
    lost = [event.count for event in events if event.reason == Reason.EVENTS_LOST]
    assert lost == [20]


def test_collector_counts_packets_without_socket() -> None:
    collector, events = make_collector([0], reached=[5, 12])

    async def scenario() -> None:
        await collector.take_baseline()
        await collector.report_losses()

    asyncio.run(scenario())
    assert reasons_and_counts(events) == [(Reason.EVENTS_LOST, 7)]


def test_collector_no_loss_when_all_received() -> None:
    collector, events = make_collector([0], reached=[0, 40, 40])
    collector._socket = FakeSocket()  # type: ignore[assignment]

    async def scenario() -> None:
        await collector.take_baseline()
        collector.on_records(denied_records(40), 0)
        await collector.report_losses()
        await collector.report_losses()

    asyncio.run(scenario())
    assert [event.reason for event in events] == [Reason.DIRECT_IP_NOT_ALLOWED] * 40


def test_collector_early_records_not_lost() -> None:
    # Records of packets counted after the counter read arrive before the count, so the
    # count of one poll can fall short, and a later poll makes up for it.
    collector, events = make_collector([0], reached=[0, 10, 60])
    collector._socket = FakeSocket()  # type: ignore[assignment]

    async def scenario() -> None:
        await collector.take_baseline()
        collector.on_records(denied_records(30), 0)
        await collector.report_losses()
        await collector.report_losses()

    asyncio.run(scenario())
    lost = [event.count for event in events if event.reason == Reason.EVENTS_LOST]
    assert lost == [30]


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


class QuietSocket(FakeSocket):
    """A FakeSocket with a real descriptor that never becomes readable, for read_loop."""

    def __init__(self) -> None:
        super().__init__()
        self._pair = socket.socketpair()

    def fileno(self) -> int:
        return self._pair[0].fileno()

    def close(self) -> None:
        for end in self._pair:
            end.close()


def test_prepared_start_reads_no_counters() -> None:
    collector, _ = make_collector([10])
    nft: FakeNft = collector.nft  # type: ignore[assignment]
    prepared = PreparedLog({"log_suppressed": 10, "log_reached": 4}, None, QuietSocket(), None)  # type: ignore[arg-type]

    async def scenario() -> None:
        await collector.start(prepared)
        await collector.stop()

    asyncio.run(scenario())
    # stop() reads once for its last report; the baseline came from the start pass.
    assert nft.reads == 1


def test_prepared_baseline_counts_later_suppression() -> None:
    collector, events = make_collector([25])
    prepared = PreparedLog({"log_suppressed": 10}, None, QuietSocket(), None)  # type: ignore[arg-type]

    async def scenario() -> None:
        await collector.start(prepared)
        await collector.stop()

    asyncio.run(scenario())
    assert reasons_and_counts(events) == [(Reason.EVENTS_SUPPRESSED, 15)]


def test_prepared_reached_is_loss_baseline() -> None:
    collector, events = make_collector([0], reached=[9])
    prepared = PreparedLog({"log_suppressed": 0, "log_reached": 4}, None, QuietSocket(), None)  # type: ignore[arg-type]

    async def scenario() -> None:
        await collector.start(prepared)
        await collector.stop()

    asyncio.run(scenario())
    # Five packets logged after the baseline, none received.
    assert reasons_and_counts(events) == [(Reason.EVENTS_LOST, 5)]


def test_prepared_counter_failure_marks_failing() -> None:
    collector, _ = make_collector([0])
    prepared = PreparedLog(None, "No such file or directory", QuietSocket(), None)  # type: ignore[arg-type]

    async def scenario() -> bool:
        await collector.start(prepared)
        failing = collector._counter_failing
        await collector.stop()
        return failing

    assert asyncio.run(scenario()) is True


def test_prepared_open_failure_leaves_no_socket() -> None:
    collector, _ = make_collector([0])
    prepared = PreparedLog({"log_suppressed": 0}, None, None, OSError(1, "Operation not permitted"))

    async def scenario() -> bool:
        await collector.start(prepared)
        opened = collector._socket is not None
        await collector.stop()
        return opened

    assert asyncio.run(scenario()) is False


def test_counters_from_listing() -> None:
    output = [counter_item("log_suppressed", 3), counter_item("log_reached", 8), counter_item("other", 1)]
    assert counters_from(output) == {"log_suppressed": 3, "log_reached": 8}


def test_prepared_settled_stop_reads_nothing() -> None:
    collector, events = make_collector([0])
    nft: FakeNft = collector.nft  # type: ignore[assignment]
    prepared = PreparedLog({"log_suppressed": 0}, None, QuietSocket(), None, settled=True)  # type: ignore[arg-type]

    async def scenario() -> None:
        await collector.start(prepared)
        await collector.stop()

    asyncio.run(scenario())
    assert (nft.reads, events) == (0, [])
