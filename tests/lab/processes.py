"""Processes the lab starts: tracked by pid, waited for by port, ended by pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tests.lab.errors import ServerExitedError, ServerNotReadyError
from tests.lab.netns import is_tcp_listening

REPO_ROOT = Path(__file__).resolve().parents[2]

# Seconds a process gets after SIGTERM before it is sent SIGKILL.
TERMINATE_GRACE = 3.0

POLL_INTERVAL = 0.02


def python_module_argv(module: str, *args: str) -> list[str]:
    """Build the argv that runs ``python -m module`` with the interpreter running the tests."""
    return [sys.executable, "-m", module, *args]


def server_env() -> dict[str, str]:
    """Return the environment for the lab's own Python servers: clean, with the repo importable."""
    return {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}


def read_log_tail(log_path: Path | None, max_chars: int = 2000) -> str:
    if log_path is None:
        return "(no log file)"
    try:
        text = log_path.read_text(errors="replace")
    except OSError as exc:
        return f"(log {log_path} unreadable: {exc})"
    return text[-max_chars:] or "(log is empty)"


class ProcessTracker:
    """Starts processes and ends every one of them, by pid, on terminate_all()."""

    def __init__(self) -> None:
        self._processes: list[subprocess.Popen[Any]] = []

    def spawn(
        self, argv: Sequence[str], *, log_path: Path | None = None, **popen_kwargs: Any
    ) -> subprocess.Popen[Any]:
        """Start ``argv``. With ``log_path``, its stdout and stderr go to that file."""
        if log_path is not None:
            with open(log_path, "ab") as log_file:
                popen_kwargs.setdefault("stdout", log_file)
                popen_kwargs.setdefault("stderr", subprocess.STDOUT)
                process = subprocess.Popen(list(argv), **popen_kwargs)
        else:
            process = subprocess.Popen(list(argv), **popen_kwargs)
        self._processes.append(process)
        return process

    def terminate_all(self, grace: float = TERMINATE_GRACE) -> None:
        """Send SIGTERM to every tracked process, SIGKILL to those alive after ``grace``."""
        processes, self._processes = self._processes, []
        for process in processes:
            _send_signal(process, signal.SIGTERM)

        deadline = time.monotonic() + grace
        for process in processes:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                process.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                _send_signal(process, signal.SIGKILL)
                process.wait(timeout=grace)
            _close_pipes(process)

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self._processes]


def _send_signal(process: subprocess.Popen[Any], signum: int) -> None:
    if process.poll() is not None:
        return
    try:
        os.kill(process.pid, signum)
    except ProcessLookupError:
        pass


def _close_pipes(process: subprocess.Popen[Any]) -> None:
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            stream.close()


def wait_for_listeners(
    *,
    server: str,
    process: subprocess.Popen[Any],
    netns: str,
    endpoints: Iterable[tuple[str, int]],
    log_path: Path | None,
    timeout: float,
) -> None:
    """Poll until every (address, port) accepts TCP connections inside ``netns``.

    Raises ServerExitedError as soon as the process has exited, and
    ServerNotReadyError once ``timeout`` seconds have passed.
    """
    deadline = time.monotonic() + timeout
    for address, port in endpoints:
        while not is_tcp_listening(netns, address, port):
            returncode = process.poll()
            if returncode is not None:
                raise ServerExitedError(server, returncode, read_log_tail(log_path))
            if time.monotonic() >= deadline:
                raise ServerNotReadyError(server, address, port, timeout, read_log_tail(log_path))
            time.sleep(POLL_INTERVAL)


def client_env() -> dict[str, str]:
    """Return a clean environment for real clients (curl, dig, openssl).

    This machine sets SSL_CERT_FILE, CURL_CA_BUNDLE and REQUESTS_CA_BUNDLE, which would
    override a CA passed on the command line.
    """
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
