"""The daemon's audit service: the writer thread, read-only queries, and per-sandbox recorders."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import structlog

from ..config import Config
from ..errors import RuntadError
from .model import EgressEvent
from .queries import AuditPage, PageRequest, fetch_page
from .recorder import PolicyView, Recorder
from .store import BUSY_TIMEOUT_MS, AuditDatabase
from .writer import AuditWriter, WriterSettings

log = structlog.get_logger()

AUDIT_DB_NAME = "audit.db"
READER_THREADS = 4
CLOSE_TIMEOUT = 15.0


class AuditUnavailableError(RuntadError):
    code = "audit_unavailable"
    status = 503

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(
            f"cannot read the audit database {path}: {detail}. Enforcement is not affected;"
            " check the disk and the runtad log"
        )
        self.path = path
        self.detail = detail


def settings_from_config(config: Config) -> WriterSettings:
    return WriterSettings(
        fold_seconds=config.audit_fold_seconds,
        queue_max=config.audit_queue_max,
        max_rows=config.audit_max_rows,
        retention_days=config.audit_retention_days,
        log_lines=config.audit_log_lines,
    )


class AuditService:
    def __init__(self, path: Path, settings: WriterSettings) -> None:
        self.path = path
        self.settings = settings
        self.writer = AuditWriter(lambda: AuditDatabase(path), settings)
        self._executor = ThreadPoolExecutor(READER_THREADS, thread_name_prefix="audit-read")
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

    @classmethod
    def from_config(cls, config: Config) -> AuditService:
        return cls(config.state_dir / AUDIT_DB_NAME, settings_from_config(config))

    def start(self) -> None:
        """Create the database if needed and start the writer thread.

        A database that cannot be opened is logged and retried by the writer. Enforcement
        and DNS start either way.
        """
        try:
            AuditDatabase(self.path).close()
        except (sqlite3.Error, OSError) as error:
            log.error("audit_open_failed", path=str(self.path), error=str(error))
        self.writer.start()
        log.info("audit_started", path=str(self.path), **dataclasses.asdict(self.settings))

    async def close(self) -> None:
        """Write every pending event, then stop the writer and the readers."""
        await asyncio.to_thread(self.writer.close, CLOSE_TIMEOUT)
        self._executor.shutdown(wait=True)
        with self._readers_lock:
            for connection in self._readers:
                connection.close()
            self._readers.clear()
        log.info("audit_stopped", **dataclasses.asdict(self.writer.stats))

    def submit(self, event: EgressEvent) -> bool:
        return self.writer.submit(event)

    def recorder(self, runtime: str, policy: PolicyView | None = None) -> Recorder:
        return Recorder(runtime, self.writer.submit, policy)

    async def page(self, request: PageRequest) -> AuditPage:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._read_page, request)

    def _read_page(self, request: PageRequest) -> AuditPage:
        try:
            return fetch_page(self._reader(), request)
        except sqlite3.Error as error:
            raise AuditUnavailableError(self.path, str(error)) from error

    def _reader(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False,
                isolation_level=None,
            )
            connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._local.connection = connection
            with self._readers_lock:
                self._readers.append(connection)
        return connection
