"""Paged audit queries: cursors, order, filters and parameter validation."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtad.audit.queries import (
    EVENT_PARAMETERS,
    MAX_LIMIT,
    PageRequest,
    event_json,
    fetch_page,
    parse_page_request,
)
from runtad.audit.store import AuditDatabase
from runtad.errors import InvalidRequestError
from tests.pure.audit_helpers import make_event

EVENTS = 45


@pytest.fixture
def connection(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    path = tmp_path / "audit.db"
    database = AuditDatabase(path)
    # Runtimes alternate: odd ids belong to sb1, even ids to sb2.
    database.insert(
        [make_event(f"host{index}.test", runtime=f"sb{index % 2 + 1}") for index in range(EVENTS)]
    )
    database.close()
    reader = sqlite3.connect(path)
    yield reader
    reader.close()


def all_ids(connection: sqlite3.Connection, request: PageRequest) -> list[int]:
    ids: list[int] = []
    cursor: int | None = request.after
    for _ in range(EVENTS + 1):
        page = fetch_page(connection, PageRequest(request.runtime, request.category, request.limit, cursor, request.order))
        ids.extend(row.id for row in page.rows)
        if page.next is None or not page.rows:
            break
        cursor = int(page.next)
    return ids


def test_page_default_newest_first(connection: sqlite3.Connection) -> None:
    page = fetch_page(connection, PageRequest())
    assert [row.id for row in page.rows] == list(range(45, 25, -1))
    assert page.next == "26"


def test_page_desc_walk_sees_each_once(connection: sqlite3.Connection) -> None:
    assert all_ids(connection, PageRequest(limit=7)) == list(range(45, 0, -1))


def test_page_desc_last_page_has_no_next(connection: sqlite3.Connection) -> None:
    page = fetch_page(connection, PageRequest(limit=5, after=6))
    assert [row.id for row in page.rows] == [5, 4, 3, 2, 1]
    assert page.next is None


def test_page_asc_after_cursor(connection: sqlite3.Connection) -> None:
    page = fetch_page(connection, PageRequest(limit=3, after=40, order="asc"))
    assert [row.id for row in page.rows] == [41, 42, 43]
    assert page.next == "43"


def test_page_asc_tail_keeps_cursor(connection: sqlite3.Connection) -> None:
    page = fetch_page(connection, PageRequest(limit=10, after=43, order="asc"))
    assert [row.id for row in page.rows] == [44, 45]
    assert page.next == "45"


def test_page_asc_empty_echoes_cursor(connection: sqlite3.Connection) -> None:
    page = fetch_page(connection, PageRequest(after=45, order="asc"))
    assert page.rows == []
    assert page.next == "45"


def test_page_asc_walk_sees_each_once(connection: sqlite3.Connection) -> None:
    assert all_ids(connection, PageRequest(limit=8, order="asc")) == list(range(1, 46))


def test_page_filters_runtime(connection: sqlite3.Connection) -> None:
    ids = all_ids(connection, PageRequest(runtime="sb2", limit=6))
    assert ids == list(range(44, 0, -2))


def test_page_filters_category(connection: sqlite3.Connection) -> None:
    page = fetch_page(connection, PageRequest(category="egress", limit=MAX_LIMIT))
    assert len(page.rows) == EVENTS


def test_page_unknown_runtime_is_empty(connection: sqlite3.Connection) -> None:
    page = fetch_page(connection, PageRequest(runtime="nobody"))
    assert page.rows == []
    assert page.next is None


def test_page_event_json_is_flat(connection: sqlite3.Connection) -> None:
    row = fetch_page(connection, PageRequest(limit=1)).rows[0]
    document = event_json(row)
    assert list(document) == [
        "id", "time", "runtime", "action", "host", "address", "port", "protocol", "path",
        "reason", "message", "source", "count",
    ]
    assert document["id"] == 45


def test_parse_defaults() -> None:
    assert parse_page_request([]) == PageRequest(None, None, 20, None, "desc")


def test_parse_all_parameters() -> None:
    request = parse_page_request(
        [("runtime", "sb1"), ("category", "egress"), ("limit", "1000"), ("after", "17"), ("order", "asc")]
    )
    assert request == PageRequest("sb1", "egress", 1000, 17, "asc")


@pytest.mark.parametrize("value", ["0", "1001", "abc", "-1", "", "1.5", "٣"])
def test_parse_bad_limit(value: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_page_request([("limit", value)])
    assert caught.value.field == "limit"
    assert "1 to 1000" in caught.value.message


@pytest.mark.parametrize("value", ["up", "ASC", ""])
def test_parse_bad_order(value: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_page_request([("order", value)])
    assert caught.value.field == "order"
    assert "'asc'" in caught.value.message


@pytest.mark.parametrize("value", ["x", "-5", "", "12345678901234567890"])
def test_parse_bad_cursor(value: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_page_request([("after", value)])
    assert caught.value.field == "after"


def test_parse_bad_category() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_page_request([("category", "network")])
    assert caught.value.field == "category"
    assert "egress" in caught.value.message


def test_parse_empty_runtime() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_page_request([("runtime", "")])
    assert caught.value.field == "runtime"


def test_parse_unknown_parameter() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_page_request([("limt", "5")])
    assert caught.value.field == "limt"
    assert "limit" in caught.value.message


def test_parse_runtime_not_taken_on_events_route() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_page_request([("runtime", "sb1")], EVENT_PARAMETERS)
    assert caught.value.field == "runtime"


def test_parse_repeated_parameter() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_page_request([("limit", "5"), ("limit", "6")])
    assert caught.value.field == "limit"
