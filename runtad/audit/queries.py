"""Paged reads of the audits table: parameter validation, the SQL, and the JSON shapes.

Cursors are the decimal id of an audit row, opaque to clients. Ids only grow, so
`order=asc&after=C` returns every event stored after C exactly once, which is how a
watcher follows new events.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidRequestError
from .model import CATEGORIES

DEFAULT_LIMIT = 20
MAX_LIMIT = 1000
ORDERS = ("desc", "asc")
MAX_RUNTIME_LENGTH = 255
# A cursor is a SQLite rowid, at most 19 decimal digits.
MAX_CURSOR_DIGITS = 19

AUDIT_PARAMETERS = ("runtime", "category", "limit", "after", "order")
EVENT_PARAMETERS = ("limit", "after", "order")


@dataclass(frozen=True)
class PageRequest:
    runtime: str | None = None
    category: str | None = None
    limit: int = DEFAULT_LIMIT
    after: int | None = None
    order: str = "desc"


@dataclass(frozen=True)
class AuditRow:
    id: int
    time: str
    runtime: str
    category: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class AuditPage:
    rows: list[AuditRow]
    next: str | None


def parse_page_request(
    parameters: Iterable[tuple[str, str]], allowed: tuple[str, ...] = AUDIT_PARAMETERS
) -> PageRequest:
    """Validate query parameters; raise InvalidRequestError naming the first bad one."""
    values: dict[str, str] = {}
    for key, value in parameters:
        if key not in allowed:
            raise InvalidRequestError(
                f"unknown query parameter {key!r}: use " + ", ".join(allowed), field=key
            )
        if key in values:
            raise InvalidRequestError(f"query parameter {key!r} is given twice: give it once", field=key)
        values[key] = value
    return PageRequest(
        runtime=_runtime(values.get("runtime")),
        category=_category(values.get("category")),
        limit=_limit(values.get("limit")),
        after=_cursor(values.get("after")),
        order=_order(values.get("order")),
    )


def _runtime(value: str | None) -> str | None:
    if value is None:
        return None
    if not value or len(value) > MAX_RUNTIME_LENGTH:
        raise InvalidRequestError(
            f"invalid runtime {value[:40]!r}: use a sandbox name as listed by 'runta sandbox list'",
            field="runtime",
        )
    return value


def _category(value: str | None) -> str | None:
    if value is None or value in CATEGORIES:
        return value
    raise InvalidRequestError(
        f"invalid category {value[:40]!r}: use one of " + ", ".join(CATEGORIES), field="category"
    )


def _limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise InvalidRequestError(
            f"invalid limit {value[:40]!r}: use an integer from 1 to {MAX_LIMIT}"
            f" (default {DEFAULT_LIMIT})",
            field="limit",
        )
    return int(value)


def _cursor(value: str | None) -> int | None:
    if value is None:
        return None
    # Event ids are SQLite integers, so a cursor above 2**63 - 1 names no event.
    if (
        not value.isascii()
        or not value.isdigit()
        or len(value) > MAX_CURSOR_DIGITS
        or int(value) > 2**63 - 1
    ):
        raise InvalidRequestError(
            f"invalid after {value[:40]!r}: pass the 'next' value of an earlier page", field="after"
        )
    return int(value)


def _order(value: str | None) -> str:
    if value is None:
        return "desc"
    if value not in ORDERS:
        raise InvalidRequestError(
            f"invalid order {value[:40]!r}: use 'desc' (newest first, the default) or 'asc'",
            field="order",
        )
    return value


def fetch_page(connection: sqlite3.Connection, request: PageRequest) -> AuditPage:
    """Read one page. In desc order next is None on the last page. In asc order next is
    always the cursor to poll from, because newer events may arrive at any time."""
    clauses: list[str] = []
    arguments: list[object] = []
    if request.runtime is not None:
        clauses.append("runtime = ?")
        arguments.append(request.runtime)
    if request.category is not None:
        clauses.append("category = ?")
        arguments.append(request.category)
    ascending = request.order == "asc"
    if request.after is not None:
        clauses.append("id > ?" if ascending else "id < ?")
        arguments.append(request.after)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    direction = "ASC" if ascending else "DESC"
    # One row beyond the page shows whether a desc page is the last.
    arguments.append(request.limit + 1)
    rows = connection.execute(
        f"SELECT id, time, runtime, category, payload FROM audits{where}"
        f" ORDER BY id {direction} LIMIT ?",
        arguments,
    ).fetchall()

    more = len(rows) > request.limit
    page = [_row(row) for row in rows[: request.limit]]
    if ascending:
        if page:
            cursor: str | None = str(page[-1].id)
        else:
            cursor = None if request.after is None else str(request.after)
    else:
        cursor = str(page[-1].id) if more and page else None
    return AuditPage(page, cursor)


def _row(row: tuple[Any, ...]) -> AuditRow:
    return AuditRow(
        id=int(row[0]), time=str(row[1]), runtime=str(row[2]), category=str(row[3]),
        payload=json.loads(row[4]),
    )


def audit_json(row: AuditRow) -> dict[str, Any]:
    """Return the /v1/audits item: the generic audit with the event as its payload."""
    return {
        "id": row.id, "time": row.time, "runtime": row.runtime, "category": row.category,
        "payload": row.payload,
    }


def event_json(row: AuditRow) -> dict[str, Any]:
    """Return the /v1/runtimes/{name}/egress/events item: the event's fields, flat."""
    return {"id": row.id, **row.payload}
