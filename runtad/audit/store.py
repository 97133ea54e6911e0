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

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from .model import EgressEvent, format_time

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
        rows = [
            (format_time(event.time), event.runtime, event.category, json.dumps(event.to_payload()))
            for event in events
        ]
        ids: list[int] = []
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            for row in rows:
                cursor = connection.execute(
                    "INSERT INTO audits (time, runtime, category, payload) VALUES (?, ?, ?, ?)", row
                )
                ids.append(int(cursor.lastrowid or 0))
            connection.execute("COMMIT")
        except BaseException:
            _rollback(connection)
            raise
        return ids

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


def _rollback(connection: sqlite3.Connection) -> None:
    # SQLite may have rolled the transaction back itself (SQLITE_FULL, SQLITE_IOERR), and
    # then ROLLBACK fails with "no transaction is active".
    if connection.in_transaction:
        try:
            connection.execute("ROLLBACK")
        except sqlite3.Error:
            pass
