"""Per-sandbox NFLOG collector: kernel log events of the sandbox ruleset become audit events.

The socket is created inside the sandbox's netns (open_in_netns) and read on the event
loop (read_loop). Events that never became records are counted too: the ruleset's
log_suppressed counter (above the log rate limit), NFLOG sequence gaps, and the packets
that the log_reached counter saw beyond the records received (see lossledger). Each poll
turns them into one events_suppressed and one events_lost event, so nothing disappears
without a trace. A collector that cannot open or read its socket logs the
error and retries. It never stops the sandbox from starting or enforcing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from .. import metrics
from ..nflog import (
    FLUSH_TIMEOUT_CS,
    MAX_DATAGRAMS_PER_READ,
    LogRecord,
    NflogError,
    NflogSocket,
    open_bound,
    open_in_netns,
    read_loop,
)
from ..nft import Command, NftContext, NftError
from .lossledger import LossLedger
from .model import Action, Reason, Source
from .recorder import Recorder

log = structlog.get_logger()

Clock = Callable[[], float]

# Prefixes of the log statements in rules/sandbox.json, without their trailing space.
PREFIX_ALLOW = "runta allow"
PREFIX_DENY = "runta deny"
PREFIX_OPEN = "runta open"
SUPPRESSED_COUNTER = "log_suppressed"
REACHED_COUNTER = "log_reached"
# The kernel sends a partial NFLOG batch FLUSH_TIMEOUT_CS after its first message. After
# this wait past a counter read, the record of every counted packet is in the socket
# queue or was dropped, unless the machine is too loaded to run the kernel's timer.
FLUSH_WAIT_SECONDS = 3 * FLUSH_TIMEOUT_CS / 100
# Bound on read_pending() calls when a poll empties the socket. The default receive buffer
# fits a few thousand datagrams, far below this many full reads.
DRAIN_MAX_READS = 64
POLL_SECONDS = 5.0
OPEN_WAIT_SECONDS = 5.0
RETRY_MIN = 1.0
RETRY_MAX = 30.0


def build_counter_list() -> list[Command]:
    """Build the command that lists the named counters of the sandbox table."""
    return [{"list": {"counters": {"family": "inet", "table": "runta"}}}]


def parse_counter_packets(output: list[dict], name: str = SUPPRESSED_COUNTER) -> int | None:
    """Return the packet count of counter `name` in `nft list counters` output."""
    for item in output:
        counter = item.get("counter")
        if isinstance(counter, dict) and counter.get("name") == name:
            return int(counter.get("packets", 0))
    return None


def counters_from(output: list[dict]) -> dict[str, int]:
    """Return the packet counts of the log counters in `nft list counters` output."""
    counters: dict[str, int] = {}
    for item in output:
        counter = item.get("counter")
        if isinstance(counter, dict) and counter.get("name") in (SUPPRESSED_COUNTER, REACHED_COUNTER):
            counters[counter["name"]] = int(counter.get("packets", 0))
    return counters


@dataclass
class PreparedLog:
    """The log counters and the bound NFLOG socket of a sandbox, read and opened in its netns."""

    counters: dict[str, int] | None  # None when the listing failed
    counter_error: str | None
    socket: NflogSocket | None
    open_error: Exception | None
    # The counters read the same after the bind: no packet was logged while the group was
    # unbound, so the first polls need not read them (see Collector._adopt).
    settled: bool = False


def prepare_in_netns(context: NftContext, group: int) -> PreparedLog:
    """Read the counters, bind the group and read them again, on a thread inside the sandbox's netns.

    Called from the sandbox's start pass (runtad/kernelstart.py), so the collector needs
    no thread hand-off of its own. A failed listing (NftError) or bind (NflogError,
    OSError, ValueError) is returned, not raised, and Collector.start logs it.
    """
    counters: dict[str, int] | None = None
    counter_error: str | None = None
    try:
        counters = counters_from(context.run(build_counter_list()))
    except NftError as error:
        counter_error = error.detail
    try:
        sock = open_bound(group)
    except (NflogError, OSError, ValueError) as error:
        return PreparedLog(counters, counter_error, None, error)
    settled = False
    if counters is not None:
        try:
            settled = counters_from(context.run(build_counter_list())) == counters
        except NftError:
            pass  # not settled: the first polls read the counters
    return PreparedLog(counters, counter_error, sock, None, settled)


def is_loopback(record: LogRecord) -> bool:
    """Tell whether the record's destination is a loopback address (127.0.0.0/8 or ::1).

    The decoder writes addresses in their compressed form, so comparing text is enough
    and saves parsing the address for every kernel event. No IPv6 text starts with
    "127.", because dotted IPv6 forms start with "::".
    """
    return record.dst.startswith("127.") or record.dst == "::1"


def record_event(recorder: Recorder, record: LogRecord, now: float) -> bool:
    """Emit the audit event of one kernel log record; return False for records that are not ours.

    The host is the name the sandbox's own DNS answers gave for the destination, if any.
    """
    kind = record.prefix.strip()
    if kind not in (PREFIX_ALLOW, PREFIX_DENY, PREFIX_OPEN):
        return False
    if is_loopback(record):
        # runtad's redirected DNS: the ruleset accepts loopback before any log rule, so
        # this does not happen, but such a record would be runtad's own traffic.
        return False
    host = recorder.name_of(record.dst)
    rule = recorder.policy.rule_for(host) if host is not None else None
    if kind == PREFIX_DENY:
        action = Action.DENY
        if host is None:
            reason = Reason.DIRECT_IP_NOT_ALLOWED
        elif rule is not None:
            reason = Reason.ADDRESS_NOT_IN_SET
        else:
            reason = Reason.HOST_NOT_ALLOWED
    elif kind == PREFIX_ALLOW:
        action, reason = Action.ALLOW, Reason.ALLOWED_BY_POLICY
    else:
        action, reason = Action.ALLOW, Reason.ENFORCEMENT_DISABLED
    recorder.emit(
        action, reason, Source.KERNEL,
        host=host, address=record.dst, port=record.dport, protocol=str(record.protocol),
        rule=rule, when=record.timestamp or now,
    )
    return True


class Collector:
    def __init__(
        self,
        recorder: Recorder,
        netns_path: Path,
        group: int,
        nft: NftContext,
        *,
        poll_seconds: float = POLL_SECONDS,
        clock: Clock = time.time,
    ) -> None:
        self.recorder = recorder
        self.netns_path = netns_path
        self.group = group
        self.nft = nft
        self.poll_seconds = poll_seconds
        self._clock = clock
        self._socket: NflogSocket | None = None
        self._reader: asyncio.Task[None] | None = None
        self._poller: asyncio.Task[None] | None = None
        self._suppressed_seen: int | None = None
        self._lost = 0
        self._ledger = LossLedger()
        self._gaps_seen = 0
        self._counter_failing = False
        # Polls left that must read the counter because records arrived lately (see
        # report_losses).
        self._busy_polls = 0
        self._log = log.bind(runtime=recorder.runtime)

    async def start(self, prepared: PreparedLog | None = None) -> None:
        """Open the socket (or schedule retries) and start reading; never raises NFLOG errors.

        `prepared` contains the counters and socket that the sandbox's start pass read and
        opened. Without it, the collector reads and opens them itself.
        """
        # The baseline comes first, so packets logged before the group is bound count as
        # lost rather than hiding later losses.
        if prepared is None:
            await self.take_baseline()
            await self._open()
        else:
            self._adopt(prepared)
        loop = asyncio.get_running_loop()
        self._reader = loop.create_task(self._read_forever())
        self._poller = loop.create_task(self._poll_forever())

    async def stop(self) -> None:
        for task in (self._reader, self._poller):
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        self._reader = self._poller = None
        await self.report_losses()
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    async def take_baseline(self) -> None:
        """Read the counters, so that reports count only what comes after now."""
        # NOTE: after a crash or kill -9 of the previous runtad, packets suppressed or lost
        # since its last report (up to POLL_SECONDS) are never reported.
        self._set_baseline(await self._read_counters())

    def _adopt(self, prepared: PreparedLog) -> None:
        if prepared.counters is None:
            self._log.warning("log_counter_read_failed", error=prepared.counter_error)
            self._counter_failing = True
        else:
            self._set_baseline(prepared.counters)
        self._gaps_seen = 0
        if prepared.socket is None:
            self._log.error("nflog_open_failed", netns=str(self.netns_path), group=self.group,
                            error=str(prepared.open_error) or type(prepared.open_error).__name__)
            return
        self._socket = prepared.socket
        # Unless the counters stood still across the bind, packets may have been logged
        # before it, with no record: the next two polls count them.
        self._busy_polls = 0 if prepared.settled else 2

    def _set_baseline(self, counters: dict[str, int]) -> None:
        self._suppressed_seen = counters.get(SUPPRESSED_COUNTER)
        reached = counters.get(REACHED_COUNTER)
        if reached is not None:
            self._ledger.observe_counter(reached)

    def on_records(self, records: list[LogRecord], lost: int) -> None:
        """Turn records into events. `lost` only signals a loss, which the socket stats count."""
        self._busy_polls = 2
        self._ledger.add_received(len(records))
        if lost:
            self._count_lost()
        now = self._clock()
        for record in records:
            record_event(self.recorder, record, now)

    async def report_losses(self) -> None:
        """Emit events for the records that were suppressed or lost since the last report."""
        suppressed = 0
        if self._busy_polls == 0 and self._socket is not None and self._suppressed_seen is not None:
            # The kernel suppresses a log record only after the rate limit's burst was
            # logged, so a sandbox that sent no records this poll or the last one has
            # nothing suppressed. Skipping its read keeps idle sandboxes from costing a
            # libnftables context each poll.
            return
        self._busy_polls = max(0, self._busy_polls - 1)
        counters = await self._read_counters()
        current = counters.get(SUPPRESSED_COUNTER)
        if current is not None:
            previous = self._suppressed_seen
            if previous is not None:
                # A smaller value means the table was made again, and its counter restarted.
                suppressed = current - previous if current >= previous else current
            self._suppressed_seen = current
        action = Action.DENY if self.recorder.policy.enforced() else Action.ALLOW
        if suppressed:
            metrics.AUDIT_EVENTS_DROPPED.labels(reason="rate_limited").inc(suppressed)
            self.recorder.emit(action, Reason.EVENTS_SUPPRESSED, Source.KERNEL, count=suppressed)
        shortfall = await self._count_not_received(counters.get(REACHED_COUNTER))
        gaps, self._lost = self._lost, 0
        lost = gaps + shortfall
        if lost:
            self.recorder.emit(action, Reason.EVENTS_LOST, Source.KERNEL, count=lost)

    async def _count_not_received(self, reached: int | None) -> int:
        """Return the logged packets that are neither received nor counted as gaps yet.

        Waits for the kernel's flush timeout when the counter moved, then reads what the
        socket holds, so records still on their way are not counted as lost.
        """
        if reached is None:
            return 0
        if reached != self._ledger.counter and self._socket is not None:
            await asyncio.sleep(FLUSH_WAIT_SECONDS)
        if not self._drain():
            return 0
        self._ledger.observe_counter(reached)
        shortfall = self._ledger.take_shortfall()
        if shortfall:
            metrics.KERNEL_LOG_EVENTS_LOST.labels(reason="not_received").inc(shortfall)
        return shortfall

    def _drain(self) -> bool:
        """Read the socket until it is empty; return False if data remains or the read failed."""
        sock = self._socket
        if sock is None:
            return True
        for _ in range(DRAIN_MAX_READS):
            before = sock.stats.datagrams + sock.stats.overruns
            try:
                records, lost = sock.read_pending()
            except OSError as error:
                # The reader meets the same error and reopens the socket.
                self._log.warning("nflog_drain_failed", error=str(error))
                return False
            if records or lost:
                self.on_records(records, lost)
            if sock.stats.datagrams + sock.stats.overruns - before < MAX_DATAGRAMS_PER_READ:
                return True
        return False

    def _count_lost(self) -> None:
        """Count new NFULA_SEQ gaps as lost events. Overruns are not counted, because the
        gaps and the log_reached counter carry the number of events they dropped.
        """
        if self._socket is None:
            return
        stats = self._socket.stats
        gaps = stats.seq_gaps - self._gaps_seen
        self._gaps_seen = stats.seq_gaps
        if gaps:
            self._lost += gaps
            self._ledger.add_reported(gaps)
            metrics.KERNEL_LOG_EVENTS_LOST.labels(reason="sequence_gap").inc(gaps)

    async def _open(self) -> bool:
        self._gaps_seen = 0
        try:
            # open_in_netns closes a socket that arrives after its timeout, so a slow
            # open never leaves the group bound by a socket nobody reads.
            self._socket = await asyncio.to_thread(
                open_in_netns, str(self.netns_path), self.group, timeout=OPEN_WAIT_SECONDS
            )
        except (NflogError, OSError, ValueError) as error:
            self._log.error("nflog_open_failed", netns=str(self.netns_path), group=self.group,
                            error=str(error) or type(error).__name__)
            return False
        # Packets logged while no socket had the group bound get no record, and the next
        # two polls count them even if the sandbox stays quiet.
        self._busy_polls = 2
        return True

    async def _read_forever(self) -> None:
        delay = RETRY_MIN
        while True:
            if self._socket is None:
                self._log.info("nflog_open_retry", retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(RETRY_MAX, delay * 2)
                if not await self._open():
                    continue
                delay = RETRY_MIN
            assert self._socket is not None
            try:
                await read_loop(self._socket, self.on_records)
            except Exception as error:  # noqa: BLE001 - any failure restarts the reader
                self._log.error("nflog_read_failed", error=str(error), retry_in=delay)
                self._socket.close()
                self._socket = None

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            await self.report_losses()

    async def _read_counters(self) -> dict[str, int]:
        """Return the packet counts of the log counters, without those that could not be read."""
        try:
            output = await self.nft.run_async(build_counter_list())
        except NftError as error:
            if not self._counter_failing:
                self._log.warning("log_counter_read_failed", error=error.detail)
            self._counter_failing = True
            return {}
        self._counter_failing = False
        return counters_from(output)
