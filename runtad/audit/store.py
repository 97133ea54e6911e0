"""The audits table in its own SQLite file (audit.db), apart from the policy database.

A separate file means that a locked, full or broken audit database never blocks a policy
write. Only the writer thread (writer.py) writes here. Readers open their own read-only
connections (service.py), which WAL lets run alongside the writer.

Durability: journal_mode=WAL with synchronous=NORMAL. A commit is in the WAL file when
COMMIT returns, so it survives a crash or kill -9 of runtad. Only a crash of the whole
machine or a power loss can lose the last commits, because NORMAL skips the fsync per
commit. The policy database keeps synchronous=FULL, because a lost policy write changes
enforcement. A lost audit row does not, and the writer must keep up with event floods.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Sequence
from itertools import chain
from pathlib import Path

from .model import EgressEvent
from .rows import INSERT_COLUMNS, InsertRow

SCHEMA = """
CREATE TABLE IF NOT EXISTS audits (
    -- AUTOINCREMENT: an id is never reused, even after retention empties the table,
    -- so a client's cursor never skips new events.
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    runtime TEXT NOT NULL,
    category TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audits_runtime_category ON audits (runtime, category, id);
CREATE INDEX IF NOT EXISTS audits_runtime ON audits (runtime, id);
CREATE INDEX IF NOT EXISTS audits_category ON audits (category, id);
CREATE INDEX IF NOT EXISTS audits_time ON audits (time);
"""

BUSY_TIMEOUT_MS = 1000
# Rows in one INSERT statement, a power of two (see statement_sizes). With 4 parameters
# per row, a statement has 1024, far below SQLite's default limit of 32766
# (SQLITE_MAX_VARIABLE_NUMBER since SQLite 3.32).
ROWS_PER_STATEMENT = 256
# Truncate the WAL file back to this size after a checkpoint, so that a burst of writes
# does not leave a large file behind.
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024


class AuditDatabase:
    """The writer's connection to audit.db. Every method raises sqlite3.Error on failure."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = self.connect()
        try:
            self._connection.executescript(SCHEMA)
        except sqlite3.Error:
            self._connection.close()
            raise

    def connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            connection.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
        except sqlite3.Error:
            connection.close()
            raise
        return connection

    def close(self) -> None:
        self._connection.close()

    def insert(self, events: Sequence[EgressEvent]) -> list[int]:
        """Insert events in one transaction and return their ids, in order."""
        return self.insert_rows([InsertRow.from_event(event) for event in events])

    def insert_rows(self, rows: Sequence[InsertRow]) -> list[int]:
        """Insert rows in one transaction and return their ids, in order.

        Each statement inserts a power-of-two number of rows, so the connection's statement
        cache contains every statement after the first batches. One statement per row would
        release and take back the GIL once per row (sqlite3 does so around each step), and
        the event loop thread can hold the GIL for milliseconds each time.
        """
        if not rows:
            return []
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            start = 0
            for size in statement_sizes(len(rows)):
                chunk = rows[start : start + size]
                connection.execute(_insert_statement(size), list(chain.from_iterable(chunk)))
                start += size
            last_id = int(connection.execute("SELECT last_insert_rowid()").fetchone()[0])
            connection.execute("COMMIT")
        except BaseException:
            _rollback(connection)
            raise
        # The transaction holds the write lock and AUTOINCREMENT gives each new row the
        # next id, so the rows of one transaction have consecutive ids.
        return list(range(last_id - len(rows) + 1, last_id + 1))

    def count(self) -> int:
        row = self._connection.execute("SELECT count(*) FROM audits").fetchone()
        return int(row[0])

    def delete_oldest(self, limit: int) -> int:
        """Delete up to limit rows with the lowest ids and return how many were deleted."""
        return self._delete(
            "DELETE FROM audits WHERE id IN (SELECT id FROM audits ORDER BY id LIMIT ?)", (limit,)
        )

    def delete_before(self, cutoff: str, limit: int) -> int:
        """Delete up to limit rows older than cutoff (an ISO time) and return how many."""
        return self._delete(
            "DELETE FROM audits WHERE id IN"
            " (SELECT id FROM audits WHERE time < ? ORDER BY time LIMIT ?)",
            (cutoff, limit),
        )

    def _delete(self, statement: str, parameters: tuple[object, ...]) -> int:
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            deleted = connection.execute(statement, parameters).rowcount
            connection.execute("COMMIT")
        except BaseException:
            _rollback(connection)
            raise
        return int(deleted)


def statement_sizes(rows: int) -> list[int]:
    """Split rows into statement sizes: whole ROWS_PER_STATEMENT, then powers of two."""
    sizes = [ROWS_PER_STATEMENT] * (rows // ROWS_PER_STATEMENT)
    rest = rows % ROWS_PER_STATEMENT
    size = ROWS_PER_STATEMENT
    while rest:
        size //= 2
        if rest >= size:
            sizes.append(size)
            rest -= size
    return sizes


@functools.cache
def _insert_statement(rows: int) -> str:
    values = ", ".join(["(?, ?, ?, ?)"] * rows)
    return f"INSERT INTO audits {INSERT_COLUMNS} VALUES {values}"


def _rollback(connection: sqlite3.Connection) -> None:
    # SQLite may have rolled the transaction back itself (SQLITE_FULL, SQLITE_IOERR), and
    # then ROLLBACK fails with "no transaction is active".
    if connection.in_transaction:
        try:
            connection.execute("ROLLBACK")
        except sqlite3.Error:
            pass
