"""SQLite state: runtimes and their versioned egress policies, the daemon's only truth on disk.

Every method is synchronous and short. The daemon calls them through one worker thread
(Store.call), so the event loop does not wait on the disk.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, TypeVar

from .errors import AlreadyExistsError, NotFoundError, StoreError, VersionConflictError

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS runtimes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    netns TEXT NOT NULL,
    adopted INTEGER NOT NULL,
    slot INTEGER,
    host_interface TEXT,
    created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS runtimes_slot ON runtimes (slot) WHERE slot IS NOT NULL;
CREATE TABLE IF NOT EXISTS policies (
    runtime_id INTEGER PRIMARY KEY REFERENCES runtimes (id) ON DELETE CASCADE,
    enabled INTEGER NOT NULL,
    hosts TEXT NOT NULL,
    version INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    inspect TEXT NOT NULL DEFAULT 'first'
);
"""


class StoreOpenError(StoreError):
    """The state database cannot be opened, so runtad does not start."""

    def __init__(self, path: Path, error: sqlite3.Error) -> None:
        super().__init__(
            f"cannot open the state database {path}: {error}; runtad did not start, and every"
            " sandbox keeps enforcing the rules its kernel table holds. Restore the file from"
            " a backup, or move it aside to start with no sandboxes"
        )
        self.path = path


def utc_now_text() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class RuntimeRecord:
    id: int
    name: str
    netns: str
    adopted: bool
    slot: int | None
    host_interface: str | None
    created_at: str


@dataclass(frozen=True)
class PolicyRecord:
    enabled: bool
    hosts: tuple[str, ...]
    version: int
    # Gateway inspection: "first" (names of flows outside the sets) or "all" (strict).
    inspect: str = "first"


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.execute("PRAGMA synchronous=FULL")
            self._connection.execute("PRAGMA foreign_keys=ON")
            self._connection.execute("PRAGMA busy_timeout=2000")
            self._connection.executescript(SCHEMA)
            self._add_missing_columns()
        except sqlite3.Error as error:
            self._connection.close()
            raise StoreOpenError(path, error) from error
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")

    def _add_missing_columns(self) -> None:
        """Bring a database made by an older runtad to the current schema."""
        columns = {row[1] for row in self._connection.execute("PRAGMA table_info(policies)")}
        if "inspect" not in columns:
            self._connection.execute(
                "ALTER TABLE policies ADD COLUMN inspect TEXT NOT NULL DEFAULT 'first'"
            )

    async def call(self, function: Callable[..., T], *args: object) -> T:
        """Run a store method on the store's worker thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self._connection.close()

    def _write(self, statements: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            try:
                self._connection.execute("BEGIN IMMEDIATE")
                try:
                    result = statements(self._connection)
                except BaseException:
                    self._connection.execute("ROLLBACK")
                    raise
                self._connection.execute("COMMIT")
                return result
            except sqlite3.Error as error:
                raise StoreError(
                    f"cannot write the state database {self.path}: {error};"
                    " nothing was changed, check the disk and file permissions"
                ) from error

    def create_runtime(
        self, name: str, netns: str, adopted: bool, slot: int | None, host_interface: str | None
    ) -> RuntimeRecord:
        created_at = utc_now_text()

        def insert(connection: sqlite3.Connection) -> RuntimeRecord:
            try:
                cursor = connection.execute(
                    "INSERT INTO runtimes (name, netns, adopted, slot, host_interface, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (name, netns, int(adopted), slot, host_interface, created_at),
                )
            except sqlite3.IntegrityError:
                raise AlreadyExistsError(name) from None
            runtime_id = int(cursor.lastrowid or 0)
            connection.execute(
                "INSERT INTO policies (runtime_id, enabled, hosts, version, updated_at)"
                " VALUES (?, 0, '[]', 1, ?)",
                (runtime_id, created_at),
            )
            return RuntimeRecord(runtime_id, name, netns, adopted, slot, host_interface, created_at)

        return self._write(insert)

    def delete_runtime(self, name: str) -> None:
        def delete(connection: sqlite3.Connection) -> None:
            cursor = connection.execute("DELETE FROM runtimes WHERE name = ?", (name,))
            if cursor.rowcount == 0:
                raise NotFoundError(name)

        self._write(delete)

    def get_runtime(self, name: str) -> RuntimeRecord:
        with self._lock:
            row = self._connection.execute(
                "SELECT id, name, netns, adopted, slot, host_interface, created_at"
                " FROM runtimes WHERE name = ?",
                (name,),
            ).fetchone()
        if row is None:
            raise NotFoundError(name)
        return _runtime_from_row(row)

    def list_runtimes(self) -> list[RuntimeRecord]:
        with self._lock:
            rows = self._connection.execute(
                "SELECT id, name, netns, adopted, slot, host_interface, created_at"
                " FROM runtimes ORDER BY name"
            ).fetchall()
        return [_runtime_from_row(row) for row in rows]

    def used_slots(self) -> set[int]:
        with self._lock:
            rows = self._connection.execute(
                "SELECT slot FROM runtimes WHERE slot IS NOT NULL"
            ).fetchall()
        return {int(row[0]) for row in rows}

    def get_policy(self, runtime_id: int) -> PolicyRecord:
        with self._lock:
            row = self._connection.execute(
                "SELECT enabled, hosts, version, inspect FROM policies WHERE runtime_id = ?",
                (runtime_id,),
            ).fetchone()
        if row is None:
            return PolicyRecord(False, (), 1)
        return PolicyRecord(bool(row[0]), tuple(json.loads(row[1])), int(row[2]), str(row[3]))

    def save_policy(
        self,
        runtime: RuntimeRecord,
        enabled: bool,
        hosts: tuple[str, ...],
        expected_version: int,
        inspect: str,
    ) -> PolicyRecord:
        """Store a new policy version if the stored one is still expected_version."""

        def update(connection: sqlite3.Connection) -> PolicyRecord:
            row = connection.execute(
                "SELECT version FROM policies WHERE runtime_id = ?", (runtime.id,)
            ).fetchone()
            actual = int(row[0]) if row else 0
            if actual != expected_version:
                raise VersionConflictError(runtime.name, expected_version, actual)
            new_version = actual + 1
            connection.execute(
                "UPDATE policies SET enabled = ?, hosts = ?, version = ?, updated_at = ?,"
                " inspect = ? WHERE runtime_id = ?",
                (int(enabled), json.dumps(list(hosts)), new_version, utc_now_text(), inspect,
                 runtime.id),
            )
            return PolicyRecord(enabled, hosts, new_version, inspect)

        return self._write(update)


def _runtime_from_row(row: tuple[object, ...]) -> RuntimeRecord:
    return RuntimeRecord(
        id=int(str(row[0])),
        name=str(row[1]),
        netns=str(row[2]),
        adopted=bool(row[3]),
        slot=None if row[4] is None else int(str(row[4])),
        host_interface=None if row[5] is None else str(row[5]),
        created_at=str(row[6]),
    )
