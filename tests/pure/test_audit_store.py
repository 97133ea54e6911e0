"""The audit writer thread and its SQLite table: batching, folding, retention, failures."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from runtad.audit.model import Action, EgressEvent, Reason
from runtad.audit.rows import InsertRow
from runtad.audit.store import AuditDatabase
from runtad.audit.writer import AuditWriter, WriterSettings
from tests.pure.audit_helpers import make_event

DAY = 86400.0
WAIT_SECONDS = 10.0


def stored_rows(path: Path) -> list[tuple[int, str, str]]:
    with sqlite3.connect(path) as connection:
        return connection.execute("SELECT id, runtime, payload FROM audits ORDER BY id").fetchall()


def stored_payloads(path: Path) -> list[str]:
    return [payload for _, _, payload in stored_rows(path)]


def wait_for_rows(path: Path, count: int) -> int:
    deadline = time.monotonic() + WAIT_SECONDS
    rows = len(stored_rows(path))
    while rows < count and time.monotonic() < deadline:
        time.sleep(0.05)
        rows = len(stored_rows(path))
    return rows


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "audit.db"


def start_writer(path: Path, **settings: object) -> AuditWriter:
    values: dict[str, object] = {"fold_seconds": 60.0, "log_lines": False, **settings}
    try:
        AuditDatabase(path).close()  # as AuditService.start does: readers find the table
    except OSError:
        pass
    writer = AuditWriter(lambda: AuditDatabase(path), WriterSettings(**values))  # type: ignore[arg-type]
    writer.start()
    return writer


@pytest.fixture
def writer(db_path: Path) -> Iterator[AuditWriter]:
    started = start_writer(db_path)
    yield started
    started.close()


def test_store_writes_event_fields(writer: AuditWriter, db_path: Path) -> None:
    writer.submit(make_event("example.com"))
    assert writer.flush()
    [(_, runtime, payload)] = stored_rows(db_path)
    assert runtime == "sb1"
    assert '"host": "example.com"' in payload
    assert '"reason": "dns_name_not_allowed"' in payload
    assert '"time": "2027-01-15T08:00:00.000Z"' in payload


def test_store_folds_repeats_into_one_row(writer: AuditWriter, db_path: Path) -> None:
    for _ in range(3):
        writer.submit(make_event("example.com"))
    assert writer.flush()
    payloads = stored_payloads(db_path)
    assert len(payloads) == 1
    assert '"count": 3' in payloads[0]


def test_store_fold_zero_keeps_each(db_path: Path) -> None:
    writer = start_writer(db_path, fold_seconds=0.0)
    try:
        for _ in range(3):
            writer.submit(make_event("example.com"))
        assert writer.flush()
    finally:
        writer.close()
    assert len(stored_rows(db_path)) == 3


def test_store_writes_due_events_without_flush(db_path: Path) -> None:
    writer = start_writer(db_path, fold_seconds=0.2)
    try:
        writer.submit(make_event())
        assert wait_for_rows(db_path, 1) == 1
    finally:
        writer.close()


def test_store_close_writes_pending(db_path: Path) -> None:
    writer = start_writer(db_path)
    writer.submit(make_event("a.test"))
    writer.submit(make_event("b.test"))
    writer.close()
    assert len(stored_rows(db_path)) == 2


def test_store_ids_only_grow_after_emptying(db_path: Path) -> None:
    writer = start_writer(db_path, max_rows=1, fold_seconds=0.0)
    try:
        writer.submit(make_event("a.test"))
        assert writer.flush()
        writer.submit(make_event("b.test"))
        assert writer.flush()
    finally:
        writer.close()
    [(row_id, _, payload)] = stored_rows(db_path)
    assert row_id == 2
    assert "b.test" in payload


def test_retention_by_row_count(db_path: Path) -> None:
    writer = start_writer(db_path, max_rows=10)
    try:
        for index in range(25):
            writer.submit(make_event(f"host{index}.test"))
        assert writer.flush()
    finally:
        writer.close()
    rows = stored_rows(db_path)
    assert len(rows) == 10
    assert "host15.test" in rows[0][2]  # the oldest went first


def test_retention_by_age(db_path: Path) -> None:
    now = time.time()
    settings = WriterSettings(fold_seconds=0.0, retention_days=30, log_lines=False)
    writer = AuditWriter(lambda: AuditDatabase(db_path), settings)
    # Queued before the thread starts and not folded, so its first turn writes both and
    # then applies retention, which runs again only a minute later.
    writer.submit(make_event("old.test", time=now - 31 * DAY))
    writer.submit(make_event("new.test", time=now - 29 * DAY))
    writer.start()
    try:
        assert writer.flush()
    finally:
        writer.close()
    payloads = stored_payloads(db_path)
    assert len(payloads) == 1
    assert "new.test" in payloads[0]


def test_retention_counts_existing_rows(db_path: Path) -> None:
    first = start_writer(db_path, fold_seconds=0.0)
    for index in range(8):
        first.submit(make_event(f"host{index}.test"))
    first.close()
    second = start_writer(db_path, max_rows=5, fold_seconds=0.0)
    try:
        second.submit(make_event("last.test"))
        assert second.flush()
    finally:
        second.close()
    assert len(stored_rows(db_path)) == 5


def test_queue_full_counts_drops(db_path: Path) -> None:
    writer = AuditWriter(
        lambda: AuditDatabase(db_path), WriterSettings(queue_max=5, fold_seconds=0.0, log_lines=False)
    )
    accepted = [writer.submit(make_event(f"host{index}.test")) for index in range(8)]
    assert accepted == [True] * 5 + [False] * 3
    assert writer.stats.dropped == 3


def test_queue_full_drops_reported_as_event(db_path: Path) -> None:
    writer = AuditWriter(
        lambda: AuditDatabase(db_path), WriterSettings(queue_max=5, fold_seconds=0.0, log_lines=False)
    )
    for index in range(8):
        writer.submit(make_event(f"host{index}.test"))
    writer.start()
    try:
        assert writer.flush()
    finally:
        writer.close()
    payloads = stored_payloads(db_path)
    reports = [payload for payload in payloads if '"reason": "events_dropped"' in payload]
    assert len(payloads) == 6
    assert len(reports) == 1
    assert '"count": 3' in reports[0]


class FullDatabase(AuditDatabase):
    """A database whose file may not grow while full is set: inserts fail with SQLITE_FULL."""

    full = True

    def insert_rows(self, rows: Sequence[InsertRow]) -> list[int]:
        if FullDatabase.full:
            pages = self._connection.execute("PRAGMA page_count").fetchone()[0]
            self._connection.execute(f"PRAGMA max_page_count={pages}")
        else:
            self._connection.execute("PRAGMA max_page_count=1073741823")
        return super().insert_rows(rows)


def big_events(count: int) -> list[EgressEvent]:
    # Rows of about 4 KB each need new pages, which a full file cannot get.
    return [make_event(f"host{index}.test", message="x" * 4000) for index in range(count)]


@pytest.fixture
def full_writer(db_path: Path) -> Iterator[AuditWriter]:
    FullDatabase.full = True
    writer = AuditWriter(
        lambda: FullDatabase(db_path), WriterSettings(fold_seconds=0.0, log_lines=False)
    )
    writer.start()
    yield writer
    FullDatabase.full = False
    writer.close()


def test_full_disk_counts_failure(full_writer: AuditWriter, db_path: Path) -> None:
    for event in big_events(20):
        assert full_writer.submit(event)
    assert full_writer.flush()
    assert full_writer.stats.write_failures >= 1
    assert full_writer.stats.rows_written == 0
    assert stored_rows(db_path) == []


def test_full_disk_resumes_by_itself(full_writer: AuditWriter, db_path: Path) -> None:
    for event in big_events(20):
        full_writer.submit(event)
    assert full_writer.flush()
    FullDatabase.full = False
    assert wait_for_rows(db_path, 20) == 20


def test_full_disk_submit_stays_fast(full_writer: AuditWriter) -> None:
    for event in big_events(20):
        full_writer.submit(event)
    full_writer.flush()
    started = time.perf_counter()
    for event in big_events(1000):
        full_writer.submit(event)
    assert time.perf_counter() - started < 0.5


def test_full_disk_backlog_bounded(db_path: Path) -> None:
    FullDatabase.full = True
    writer = AuditWriter(
        lambda: FullDatabase(db_path), WriterSettings(queue_max=10, fold_seconds=0.0, log_lines=False)
    )
    writer.start()
    try:
        for event in big_events(10):
            writer.submit(event)
        writer.flush()
        for event in big_events(10):
            writer.submit(event)
        writer.flush()
        assert writer.stats.dropped == 10
        FullDatabase.full = False
        assert writer.flush()
    finally:
        FullDatabase.full = False
        writer.close()
    payloads = stored_payloads(db_path)
    reports = [payload for payload in payloads if '"reason": "events_dropped"' in payload]
    assert len(reports) == 1
    assert '"count": 10' in reports[0]


def hold_write_lock(path: Path) -> sqlite3.Connection:
    AuditDatabase(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    return holder


def test_locked_database_counts_failure(db_path: Path) -> None:
    holder = hold_write_lock(db_path)
    writer = start_writer(db_path, fold_seconds=0.0)
    try:
        writer.submit(make_event())
        assert writer.flush()
        assert writer.stats.write_failures >= 1
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        writer.close()


def test_locked_database_submit_does_not_wait(db_path: Path) -> None:
    holder = hold_write_lock(db_path)
    writer = start_writer(db_path, fold_seconds=0.0)
    try:
        writer.submit(make_event("first.test"))
        time.sleep(0.2)  # the writer is now waiting on the lock
        started = time.perf_counter()
        accepted = writer.submit(make_event("second.test"))
        elapsed = time.perf_counter() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    try:
        assert accepted
        assert elapsed < 0.01
    finally:
        writer.close()


def test_locked_database_resumes_after_release(db_path: Path) -> None:
    holder = hold_write_lock(db_path)
    writer = start_writer(db_path, fold_seconds=0.0)
    try:
        writer.submit(make_event("a.test"))
        writer.submit(make_event("b.test"))
        assert writer.flush()
        holder.execute("ROLLBACK")
        holder.close()
        assert wait_for_rows(db_path, 2) == 2
    finally:
        writer.close()


def test_unopenable_database_counts_failure(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    path = blocker / "audit.db"
    writer = start_writer(path, fold_seconds=0.0)
    try:
        assert writer.submit(make_event())
        assert writer.flush()
        assert writer.stats.write_failures >= 1
    finally:
        writer.close()


def test_unopenable_database_retried_with_backoff(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    attempts: list[float] = []

    def open_database() -> AuditDatabase:
        attempts.append(time.monotonic())
        return AuditDatabase(blocker / "audit.db")

    writer = AuditWriter(open_database, WriterSettings(log_lines=False))
    writer.start()
    time.sleep(2.0)
    writer.close()
    # Back-off of 0.5, 1 and 2 seconds: a few attempts, not a busy loop.
    assert 2 <= len(attempts) <= 5


def test_drop_report_keeps_action(db_path: Path) -> None:
    writer = AuditWriter(
        lambda: AuditDatabase(db_path), WriterSettings(queue_max=1, fold_seconds=0.0, log_lines=False)
    )
    writer.submit(make_event("a.test"))
    writer.submit(make_event("b.test", action=Action.ALLOW, reason=Reason.DNS_ALLOWED))
    writer.start()
    try:
        assert writer.flush()
    finally:
        writer.close()
    reports = [p for p in stored_payloads(db_path) if '"reason": "events_dropped"' in p]
    assert len(reports) == 1
    assert '"action": "allow"' in reports[0]
