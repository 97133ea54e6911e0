"""runtad as the benchmarks run it: the end-to-end tests' RuntadProcess at log level info.

The tests run runtad with debug logging, which writes a line per denied query. A
benchmark measures the daemon as it is deployed, at the default level.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.runtad_process import REPO_ROOT, RuntadProcess
from tests.lab.topology import Lab

READY_POLL_SECONDS = 0.01


class DaemonNotReadyError(Exception):
    """runtad did not open its API socket in time, or exited first."""

    def __init__(self, socket_path: Path, timeout: float, log_tail: str) -> None:
        super().__init__(
            f"runtad did not answer on {socket_path} within {timeout:.0f} s;"
            f" see its log:\n{log_tail}"
        )
        self.socket_path = socket_path
        self.timeout = timeout


class BenchDaemon(RuntadProcess):
    """A runtad in the lab's host namespace, started at log level info."""

    def __init__(self, lab: Lab, work_dir: Path, **settings: Any) -> None:
        work_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(lab, work_dir, **settings)
        self.ready_timeout = 15.0

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("runtad is not started: call start() first")
        return self.process.pid

    def start(self) -> BenchDaemon:
        self.spawn()
        self.wait_answering(self.ready_timeout)
        return self

    def spawn(self) -> None:
        with open(self.log_path, "a") as log_file:
            # nsenter execs runtad in place, so the pid of this process is runtad's.
            self.process = self.lab.spawn(
                self.lab.host_netns,
                [sys.executable, "-m", "runtad", "--config", str(self.config_path), "--log-level", "info"],
                share_mounts=True,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=str(REPO_ROOT),
            )

    def wait_answering(self, timeout: float) -> None:
        """Poll until the API socket accepts a connection; raise when runtad exits or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise DaemonNotReadyError(self.socket_path, timeout, self.log_text()[-3000:])
            try:
                with socket.socket(socket.AF_UNIX) as probe:
                    probe.connect(str(self.socket_path))
                return
            except OSError:
                time.sleep(READY_POLL_SECONDS)
        raise DaemonNotReadyError(self.socket_path, timeout, self.log_text()[-3000:])

    def client(self, timeout: float = 120.0) -> httpx.Client:
        """Return a keep-alive API client; the caller closes it."""
        transport = httpx.HTTPTransport(uds=str(self.socket_path))
        return httpx.Client(transport=transport, base_url="http://runtad/v1", timeout=timeout)
