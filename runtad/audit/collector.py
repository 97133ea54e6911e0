"""Per-sandbox NFLOG collector: kernel log events of the sandbox ruleset become audit events.

The socket is created inside the sandbox's netns (open_in_netns) and read on the event
loop (read_loop). Events that never became records are counted too: the ruleset's
log_suppressed counter (above the log rate limit) and NFLOG sequence gaps and overruns.
Each poll turns them into one events_suppressed and one events_lost event, so nothing
disappears without a trace. A collector that cannot open or read its socket logs the
error and retries. It never stops the sandbox from starting or enforcing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from .. import metrics
from ..nflog import LogRecord, NflogError, NflogSocket, open_in_netns, read_loop
from ..nft import Command, NftContext, NftError
from .model import Action, Reason, Source
from .recorder import Recorder

log = structlog.get_logger()

Clock = Callable[[], float]

# Prefixes of the log statements in rules/sandbox.json, without their trailing space.
PREFIX_ALLOW = "runta allow"
PREFIX_DENY = "runta deny"
PREFIX_OPEN = "runta open"
SUPPRESSED_COUNTER = "log_suppressed"
POLL_SECONDS = 5.0
OPEN_WAIT_SECONDS = 5.0
RETRY_MIN = 1.0
RETRY_MAX = 30.0


def build_counter_list() -> list[Command]:
    counter = {"family": "inet", "table": "runta", "name": SUPPRESSED_COUNTER}
    return [{"list": {"counter": counter}}]


def parse_counter_packets(output: list[dict]) -> int | None:
    """Return the packet count of the log_suppressed counter in `nft list counter` output."""
    for item in output:
        counter = item.get("counter")
        if isinstance(counter, dict) and counter.get("name") == SUPPRESSED_COUNTER:
            return int(counter.get("packets", 0))
    return None


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
        self._gaps_seen = 0
        self._overruns_seen = 0
        self._counter_failing = False
        # Polls left that must read the counter because records arrived lately (see
        # report_losses).
        self._busy_polls = 0
        self._log = log.bind(runtime=recorder.runtime)

    async def start(self) -> None:
        """Open the socket (or schedule retries) and start reading; never raises NFLOG errors."""
        await self._open()
        await self.take_baseline()
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
        """Read the suppressed counter, so that reports count only what comes after now."""
        # NOTE: after a crash or kill -9 of the previous runtad, packets suppressed since
        # its last report (up to POLL_SECONDS) are never reported.
        self._suppressed_seen = await self._read_suppressed()

    def on_records(self, records: list[LogRecord], lost: int) -> None:
        self._busy_polls = 2
        if lost:
            self._lost += lost
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
        current = await self._read_suppressed()
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
        lost, self._lost = self._lost, 0
        if lost:
            self.recorder.emit(action, Reason.EVENTS_LOST, Source.KERNEL, count=lost)

    def _count_lost(self) -> None:
        if self._socket is None:
            return
        stats = self._socket.stats
        gaps, overruns = stats.seq_gaps - self._gaps_seen, stats.overruns - self._overruns_seen
        self._gaps_seen, self._overruns_seen = stats.seq_gaps, stats.overruns
        if gaps:
            metrics.KERNEL_LOG_EVENTS_LOST.labels(reason="sequence_gap").inc(gaps)
        if overruns:
            metrics.KERNEL_LOG_EVENTS_LOST.labels(reason="overrun").inc(overruns)

    async def _open(self) -> bool:
        self._gaps_seen = self._overruns_seen = 0
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

    async def _read_suppressed(self) -> int | None:
        try:
            output = await self.nft.run_async(build_counter_list())
        except NftError as error:
            if not self._counter_failing:
                self._log.warning("log_counter_read_failed", error=error.detail)
            self._counter_failing = True
            return None
        self._counter_failing = False
        return parse_counter_packets(output)
