"""Stored rows of audit events: payload JSON text, time text, and multi-row inserts."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from runtad.audit.model import Action, EgressEvent, Reason, Source, format_time
from runtad.audit.rows import InsertRow, payload_text
from runtad.audit.store import ROWS_PER_STATEMENT, AuditDatabase, statement_sizes
from tests.pure.audit_helpers import make_event

optional_text = st.none() | st.text()
optional_port = st.none() | st.integers(min_value=0, max_value=65535)


@st.composite
def events(draw: st.DrawFn) -> EgressEvent:
    return EgressEvent(
        time=draw(st.floats(min_value=0, max_value=4e9)),
        runtime=draw(st.text(min_size=1)),
        action=draw(st.sampled_from(Action)),
        reason=draw(st.sampled_from(Reason)),
        source=draw(st.sampled_from(Source)),
        message=draw(st.text()),
        host=draw(optional_text),
        address=draw(optional_text),
        port=draw(optional_port),
        protocol=draw(optional_text),
        path=draw(optional_text),
        count=draw(st.integers(min_value=1, max_value=2**40)),
    )


@given(events())
def test_payload_text_matches_json_dumps(event: EgressEvent) -> None:
    assert payload_text(event) == json.dumps(event.to_payload())


def test_row_time_is_payload_time() -> None:
    row = InsertRow.from_event(make_event(time=1_800_000_000.25))
    assert row.time == "2027-01-15T08:00:00.250Z"
    assert json.loads(row.payload)["time"] == row.time


@given(st.floats(min_value=-1e10, max_value=1e11, allow_nan=False))
def test_format_time_matches_datetime(timestamp: float) -> None:
    expected = datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")
    assert format_time(timestamp) == expected.replace("+00:00", "Z")


def test_format_time_rounds_into_next_second() -> None:
    # 0.9999996 s rounds to 1,000,000 us, which datetime carries into the next second.
    assert format_time(1_800_000_000.9999996) == "2027-01-15T08:00:01.000Z"


def test_statement_sizes_cover_rows() -> None:
    for rows in range(3 * ROWS_PER_STATEMENT + 2):
        sizes = statement_sizes(rows)
        assert sum(sizes) == rows
        assert all(size <= ROWS_PER_STATEMENT for size in sizes)
        assert all(size & (size - 1) == 0 for size in sizes), sizes


def test_insert_rows_returns_stored_ids(tmp_path: Path) -> None:
    database = AuditDatabase(tmp_path / "audit.db")
    count = ROWS_PER_STATEMENT * 2 + 77
    rows = [InsertRow.from_event(make_event(f"host{index}.test")) for index in range(count)]
    first = database.insert_rows(rows[:5])
    ids = database.insert_rows(rows[5:])
    database.close()
    with sqlite3.connect(tmp_path / "audit.db") as connection:
        stored = connection.execute("SELECT id, payload FROM audits ORDER BY id").fetchall()
    assert first + ids == [row_id for row_id, _ in stored]
    assert [payload for _, payload in stored] == [row.payload for row in rows]


def test_insert_rows_empty_writes_nothing(tmp_path: Path) -> None:
    database = AuditDatabase(tmp_path / "audit.db")
    assert database.insert_rows([]) == []
    assert database.count() == 0
    database.close()
