"""The audit writer's queue: whole-queue turns, batch gathering, flush and close, log lines."""

from __future__ import annotations

import io
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import structlog

from runtad.audit import writer as writer_module
from runtad.audit.rows import InsertRow
from runtad.audit.store import AuditDatabase
from runtad.audit.writer import BATCH_MAX, AuditWriter, WriterSettings, log_audit_lines
from tests.pure.audit_helpers import make_event

WAIT_SECONDS = 10.0


class RecordingDatabase(AuditDatabase):
    """An AuditDatabase that records the size of every insert() call."""

    def __init__(self, path: Path, batches: list[int]) -> None:
        super().__init__(path)
        self.batches = batches

    def insert_rows(self, rows: Sequence[InsertRow]) -> list[int]:
        self.batches.append(len(rows))
        return super().insert_rows(rows)


def make_rows(hosts: list[str]) -> list[InsertRow]:
    return [InsertRow.from_event(make_event(host)) for host in hosts]


def stored_count(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        return int(connection.execute("SELECT count(*) FROM audits").fetchone()[0])


def new_writer(path: Path, batches: list[int], **settings: Any) -> AuditWriter:
    values: dict[str, Any] = {"fold_seconds": 0.0, "log_lines": False, **settings}
    AuditDatabase(path).close()
    return AuditWriter(lambda: RecordingDatabase(path, batches), WriterSettings(**values))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "audit.db"


@pytest.fixture
def batches() -> list[int]:
    return []


@pytest.fixture
def slow_gather(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(writer_module, "GATHER_SECONDS", 5.0)
    yield


def test_writer_batches_queued_events(db_path: Path, batches: list[int]) -> None:
    writer = new_writer(db_path, batches)
    for index in range(2 * BATCH_MAX + 500):
        assert writer.submit(make_event(f"host{index}.test"))
    writer.start()
    try:
        assert writer.flush()
    finally:
        writer.close()
    assert batches == [BATCH_MAX, BATCH_MAX, 500]
    assert stored_count(db_path) == 2 * BATCH_MAX + 500


def test_writer_gathers_trickle_into_batch(
    db_path: Path, batches: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "GATHER_SECONDS", 0.5)
    writer = new_writer(db_path, batches)
    writer.start()
    try:
        for index in range(50):
            writer.submit(make_event(f"host{index}.test"))
        deadline = time.monotonic() + WAIT_SECONDS
        while stored_count(db_path) < 50 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        writer.close()
    assert batches == [50]


def test_flush_skips_gather_wait(db_path: Path, batches: list[int], slow_gather: None) -> None:
    writer = new_writer(db_path, batches)
    writer.start()
    try:
        writer.submit(make_event())
        started = time.monotonic()
        assert writer.flush(timeout=WAIT_SECONDS)
        assert time.monotonic() - started < 2.0
    finally:
        writer.close()
    assert stored_count(db_path) == 1


def test_full_batch_skips_gather_wait(db_path: Path, batches: list[int], slow_gather: None) -> None:
    writer = new_writer(db_path, batches)
    writer.start()
    try:
        for index in range(BATCH_MAX):
            writer.submit(make_event(f"host{index}.test"))
        deadline = time.monotonic() + 3.0
        while stored_count(db_path) < BATCH_MAX and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stored_count(db_path) == BATCH_MAX
    finally:
        writer.close()


def test_flush_works_with_full_queue(db_path: Path, batches: list[int]) -> None:
    writer = new_writer(db_path, batches, queue_max=5)
    accepted = [writer.submit(make_event(f"host{index}.test")) for index in range(7)]
    writer.start()
    try:
        assert writer.flush()
    finally:
        writer.close()
    assert accepted == [True] * 5 + [False] * 2
    assert writer.stats.dropped == 2
    assert writer.stats.submitted == 5


def test_queue_has_room_after_turn(db_path: Path, batches: list[int]) -> None:
    writer = new_writer(db_path, batches, queue_max=5)
    writer.start()
    try:
        assert all(writer.submit(make_event(f"a{index}.test")) for index in range(5))
        assert writer.flush()
        assert all(writer.submit(make_event(f"b{index}.test")) for index in range(5))
        assert writer.flush()
    finally:
        writer.close()
    assert writer.stats.dropped == 0
    assert stored_count(db_path) == 10


def test_close_writes_events_in_gather(
    db_path: Path, batches: list[int], slow_gather: None
) -> None:
    writer = new_writer(db_path, batches)
    writer.start()
    writer.submit(make_event())
    started = time.monotonic()
    writer.close(timeout=WAIT_SECONDS)
    assert time.monotonic() - started < 2.0
    assert stored_count(db_path) == 1


def test_submit_from_many_threads(db_path: Path, batches: list[int]) -> None:
    writer = new_writer(db_path, batches)
    writer.start()

    def produce(name: str) -> None:
        for index in range(500):
            writer.submit(make_event(f"{name}{index}.test"))

    threads = [threading.Thread(target=produce, args=(f"t{n}-",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_SECONDS)
    try:
        assert writer.flush()
    finally:
        writer.close()
    assert writer.stats.submitted == 2000
    assert stored_count(db_path) == 2000


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


@pytest.fixture
def json_output() -> Iterator[CountingStream]:
    stream = CountingStream()
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(stream),
    )
    yield stream
    structlog.reset_defaults()


def test_audit_lines_one_per_event(json_output: CountingStream) -> None:
    log_audit_lines([7, 8, 9], make_rows(["host0.test", "host1.test", "host2.test"]))
    lines = [json.loads(line) for line in json_output.getvalue().splitlines()]
    assert [line["id"] for line in lines] == [7, 8, 9]
    assert [line["host"] for line in lines] == ["host0.test", "host1.test", "host2.test"]
    assert all(line["event"] == "egress_audit" for line in lines)
    assert all(line["level"] == "info" for line in lines)


def test_audit_lines_flush_once(json_output: CountingStream) -> None:
    log_audit_lines(list(range(100)), make_rows([f"host{index}.test" for index in range(100)]))
    assert len(json_output.getvalue().splitlines()) == 100
    assert json_output.flushes == 1


def test_audit_lines_none_write_nothing(json_output: CountingStream) -> None:
    log_audit_lines([], [])
    assert json_output.getvalue() == ""
    assert json_output.flushes == 0


class CallRecorder:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def info(self, **fields: Any) -> None:
        self.calls.append(fields)


def test_audit_lines_unrendered_pass_one_by_one() -> None:
    # A processor chain that ends with a dict hands keyword arguments to the output logger.
    output = CallRecorder()
    structlog.configure(processors=[], logger_factory=lambda *args: output)
    try:
        log_audit_lines([1, 2], make_rows(["a.test", "b.test"]))
    finally:
        structlog.reset_defaults()
    assert [call["id"] for call in output.calls] == [1, 2]
    assert [call["event"] for call in output.calls] == ["egress_audit", "egress_audit"]
