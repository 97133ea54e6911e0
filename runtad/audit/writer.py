"""The audit writer thread: a bounded queue in, folded batches into SQLite, retention.

Decision paths call submit() on the event loop. It never blocks: when the queue is full
the event is counted as dropped, and the drop is itself recorded as an events_dropped
event once writes succeed. The writer thread takes everything queued at once, and a
producer wakes it only when it waits, so a flood costs one wakeup per written batch
rather than one per event. Every database error is caught here, counted and logged at a
limited rate. Events that could not be written stay in a bounded backlog and are tried
again with back-off, so writing resumes by itself when the disk has space again or the
lock is released.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from .. import metrics
from .folding import Folder
from .loglines import log_audit_lines
from .messages import Facts, describe
from .model import Action, EgressEvent, Reason, Source, format_time
from .rows import InsertRow
from .store import AuditDatabase

log = structlog.get_logger()

Clock = Callable[[], float]

SECONDS_PER_DAY = 86400.0
# Events handed to SQLite in one transaction.
BATCH_MAX = 2000
# Rows that retention deletes in one transaction, so that writes are never held up long.
RETENTION_BATCH = 5000
RETENTION_INTERVAL = 60.0
RETRY_MIN = 0.5
RETRY_MAX = 10.0
# One error line per kind at most this often; the lines in between are counted.
ERROR_LOG_INTERVAL = 10.0
# Maximum seconds the thread sleeps, so that it notices a stop request soon.
MAX_WAIT = 1.0
# After the first event wakes the thread, it waits this long for more (or for BATCH_MAX
# events, a flush or a stop), so that a steady trickle is written in batches and does not
# wake the thread once per event.
GATHER_SECONDS = 0.02


@dataclass(frozen=True)
class WriterSettings:
    fold_seconds: float = 2.0
    queue_max: int = 100_000
    max_rows: int = 10_000_000
    retention_days: float = 30.0
    log_lines: bool = True


@dataclass
class WriterStats:
    """Totals since start, in events (a folded event counts its repeats) unless named rows."""

    submitted: int = 0
    dropped: int = 0  # queue full or backlog full
    rows_written: int = 0
    write_failures: int = 0  # transactions that failed
    rows_deleted: int = 0  # by retention


class _Stop:
    pass


_STOP = _Stop()
_Item = EgressEvent | threading.Event | _Stop


class _Inbox:
    """The bounded queue between producers and the writer thread.

    Only events count against max_events. Flush and stop requests always fit, so flush()
    and close() never wait for room. A producer notifies the waiting writer only once the
    writer's wake threshold is reached, which is 1 event while it is idle and BATCH_MAX
    while it gathers a batch.
    """

    def __init__(self, max_events: int) -> None:
        self.max_events = max(1, max_events)
        self._items: list[_Item] = []
        self._events = 0
        self._requests = 0
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._wake_at = math.inf  # event count that wakes the writer, or infinity while it works

    def __len__(self) -> int:
        return len(self._items)

    def put(self, event: EgressEvent) -> bool:
        """Queue one event and return True, or return False if the queue is full."""
        with self._lock:
            if self._events >= self.max_events:
                return False
            self._items.append(event)
            self._events += 1
            if self._events >= self._wake_at:
                self._ready.notify()
        return True

    def put_request(self, item: threading.Event | _Stop) -> None:
        with self._lock:
            self._items.append(item)
            self._requests += 1
            self._ready.notify()

    def take_all(self, timeout: float, gather: float) -> list[_Item]:
        """Wait up to `timeout` for a first item and up to `gather` for a batch; take all."""
        with self._lock:
            if not self._items and timeout > 0:
                self._wait(1, timeout)
            if self._items and not self._requests and self._events < BATCH_MAX and gather > 0:
                self._wait(BATCH_MAX, gather)
            items, self._items = self._items, []
            self._events = self._requests = 0
        return items

    def _wait(self, wake_at: float, timeout: float) -> None:
        self._wake_at = wake_at
        try:
            self._ready.wait(timeout)
        finally:
            self._wake_at = math.inf


class _Throttle:
    """Allow one log line per interval and count the ones held back."""

    def __init__(self, interval: float, clock: Clock) -> None:
        self.interval = interval
        self._clock = clock
        self._next = -math.inf
        self.held_back = 0

    def take(self) -> int | None:
        """Return the count held back since the last line if a line may go out now, else None."""
        now = self._clock()
        if now < self._next:
            self.held_back += 1
            return None
        self._next = now + self.interval
        held_back, self.held_back = self.held_back, 0
        return held_back


class AuditWriter:
    def __init__(
        self,
        open_database: Callable[[], AuditDatabase],
        settings: WriterSettings,
        *,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
    ) -> None:
        self.settings = settings
        self.stats = WriterStats()
        self._open_database = open_database
        self._database: AuditDatabase | None = None
        self._clock = clock
        self._wall_clock = wall_clock
        self._inbox = _Inbox(settings.queue_max)
        self._folder = Folder(settings.fold_seconds, settings.queue_max, clock)
        self._backlog: list[EgressEvent] = []
        self._dropped: Counter[tuple[str, Action]] = Counter()
        self._drop_lock = threading.Lock()
        self._rows = 0
        self._retry_at = -math.inf
        self._retry_delay = RETRY_MIN
        self._retention_at = -math.inf
        self._error_log = _Throttle(ERROR_LOG_INTERVAL, clock)
        self._drop_log = _Throttle(ERROR_LOG_INTERVAL, clock)
        self._thread: threading.Thread | None = None

    # --- caller side (any thread) --------------------------------------------------------

    def submit(self, event: EgressEvent) -> bool:
        """Queue an event without blocking; return False when it was dropped."""
        if not self._inbox.put(event):
            self._count_dropped(event, "queue_full")
            return False
        self.stats.submitted += event.count
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def flush(self, timeout: float = 10.0) -> bool:
        """Write every queued and held event now; return whether that finished in time."""
        done = threading.Event()
        self._inbox.put_request(done)
        return done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is pending, stop the thread and close the database."""
        if self._thread is None:
            return
        self._inbox.put_request(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("audit_writer_stop_timed_out", seconds=timeout, queued=len(self._inbox))

    def _count_dropped(self, event: EgressEvent, cause: str) -> None:
        metrics.AUDIT_EVENTS_DROPPED.labels(reason=cause).inc(event.count)
        with self._drop_lock:
            self._dropped[(event.runtime, event.action)] += event.count
            self.stats.dropped += event.count
        held_back = self._drop_log.take()
        if held_back is not None:
            log.warning(
                "audit_event_dropped", runtime=event.runtime, reason=str(event.reason), cause=cause,
                queue_max=self.settings.queue_max, similar_lines_suppressed=held_back,
            )

    # --- writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        self._ensure_database()
        stopping = False
        while not stopping:
            try:
                stopping = self._turn()
            except Exception:  # a fault here must not end the audit trail
                log.exception("audit_writer_fault", backlog=len(self._backlog))
                time.sleep(RETRY_MAX)
        if self._backlog:
            lost = sum(event.count for event in self._backlog)
            metrics.AUDIT_EVENTS_DROPPED.labels(reason="write_failed").inc(lost)
            log.error("audit_events_lost_at_stop", events=lost, path=self._path_text())
        if self._database is not None:
            self._database.close()
            self._database = None

    def _turn(self) -> bool:
        """Take queued items, write what is due, apply retention; return True on stop."""
        stopping = False
        items = self._inbox.take_all(self._wait_seconds(), GATHER_SECONDS)
        requests: list[threading.Event] = []
        for item in items:
            if isinstance(item, EgressEvent) and self.settings.fold_seconds > 0:
                self._folder.add(item)
            elif isinstance(item, EgressEvent):
                self._backlog.append(item)
            elif isinstance(item, threading.Event):
                requests.append(item)
            else:
                stopping = True
        release_all = stopping or bool(requests)
        self._backlog.extend(self._folder.pop_all() if release_all else self._folder.pop_due())
        self._write_backlog(force=release_all)
        if self._retry_at == -math.inf:
            # Drop counts become events only while writes succeed, so a failing
            # database does not fill the backlog with reports.
            self._backlog.extend(self._drop_reports())
            self._write_backlog(force=True)
        self._bound_backlog()
        self._apply_retention()
        for request in requests:
            request.set()
        return stopping

    def _wait_seconds(self) -> float:
        now = self._clock()
        # Retention and the open of a missing database wait for a pending retry too.
        moments = [now + MAX_WAIT, max(self._retention_at, self._retry_at)]
        if self._rows > self.settings.max_rows:
            moments.append(self._retry_at)
        deadline = self._folder.next_deadline()
        if deadline is not None:
            moments.append(deadline)
        if self._backlog:
            moments.append(self._retry_at)
        return max(0.0, min(moments) - now)

    def _drop_reports(self) -> list[EgressEvent]:
        with self._drop_lock:
            dropped, self._dropped = self._dropped, Counter()
        now = self._wall_clock()
        return [
            EgressEvent(
                time=now, runtime=runtime, action=action, reason=Reason.EVENTS_DROPPED,
                source=Source.DAEMON, count=count,
                message=describe(Reason.EVENTS_DROPPED, Facts(runtime=runtime, count=count)),
            )
            for (runtime, action), count in dropped.items()
        ]

    def _bound_backlog(self) -> None:
        excess = len(self._backlog) - self.settings.queue_max
        if excess <= 0:
            return
        for event in self._backlog[:excess]:
            self._count_dropped(event, "write_failed")
        del self._backlog[:excess]

    def _write_backlog(self, force: bool) -> None:
        if not self._backlog or (not force and self._clock() < self._retry_at):
            return
        database = self._ensure_database()
        while self._backlog and database is not None:
            batch = self._backlog[:BATCH_MAX]
            rows = [InsertRow.from_event(event) for event in batch]
            try:
                ids = database.insert_rows(rows)
            except sqlite3.Error as error:
                self._on_write_error("insert", error, len(batch))
                return
            del self._backlog[: len(batch)]
            self._rows += len(ids)
            self.stats.rows_written += len(ids)
            for source, count in Counter(str(event.source) for event in batch).items():
                metrics.AUDIT_EVENTS_WRITTEN.labels(source=source).inc(count)
            self._retry_delay = RETRY_MIN
            self._retry_at = -math.inf
            if self.settings.log_lines:
                log_audit_lines(ids, rows)

    def _apply_retention(self) -> None:
        if self._clock() < self._retry_at:
            return
        database = self._ensure_database()
        if database is None:
            return
        try:
            if self._rows > self.settings.max_rows:
                excess = self._rows - self.settings.max_rows
                deleted = database.delete_oldest(min(excess, RETENTION_BATCH))
                self._deleted(deleted)
                if deleted == 0:
                    # The table holds fewer rows than counted (deleted from outside).
                    self._rows = database.count()
            if self._clock() >= self._retention_at:
                age = self.settings.retention_days * SECONDS_PER_DAY
                cutoff = format_time(self._wall_clock() - age)
                deleted = database.delete_before(cutoff, RETENTION_BATCH)
                self._deleted(deleted)
                # A full batch means that more rows are due, so the next turn deletes again.
                pause = 0.0 if deleted >= RETENTION_BATCH else RETENTION_INTERVAL
                self._retention_at = self._clock() + pause
        except sqlite3.Error as error:
            self._on_write_error("retention", error, 0)

    def _deleted(self, rows: int) -> None:
        self._rows = max(0, self._rows - rows)
        self.stats.rows_deleted += rows

    def _ensure_database(self) -> AuditDatabase | None:
        if self._database is not None:
            return self._database
        try:
            database = self._open_database()
        except (sqlite3.Error, OSError) as error:
            self._on_write_error("open", error, 0)
            return None
        try:
            self._rows = database.count()
        except sqlite3.Error as error:
            # NOTE: the row bound then counts only rows written from now on, so the
            # table can exceed max_rows by the rows it already held.
            self._on_write_error("count", error, 0)
        self._database = database
        return database

    def _path_text(self) -> str | None:
        return str(self._database.path) if self._database is not None else None

    def _on_write_error(self, step: str, error: Exception, events: int) -> None:
        self.stats.write_failures += 1
        self._retry_at = self._clock() + self._retry_delay
        retry_in = self._retry_delay
        self._retry_delay = min(RETRY_MAX, self._retry_delay * 2)
        held_back = self._error_log.take()
        if held_back is not None:
            log.error(
                "audit_write_failed", step=step, error=str(error), path=self._path_text(), events=events,
                backlog=len(self._backlog), retry_in=retry_in, similar_lines_suppressed=held_back,
            )

