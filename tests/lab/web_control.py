"""The lab-side handle on the web server process: listeners, certificates, readiness."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.lab.errors import LabError
from tests.lab.files import write_atomically
from tests.lab.netns import netns_argv
from tests.lab.processes import (
    ProcessTracker,
    python_module_argv,
    server_env,
    wait_for_listeners,
)
from tests.lab.tls import TestCa


class WebPortConflictError(LabError):
    """A port on an address is asked to serve both HTTP and HTTPS."""

    def __init__(self, address: str, port: int, scheme: str, existing: str) -> None:
        self.address = address
        self.port = port
        self.scheme = scheme
        self.existing = existing
        super().__init__(
            f"cannot serve {scheme} on {address} port {port}: it already serves {existing}; "
            "pick another port"
        )


@dataclass
class Listener:
    address: str
    port: int
    scheme: str
    names: set[str] = field(default_factory=set)
    cert_path: Path | None = None

    def to_json(self) -> dict[str, Any]:
        cert = str(self.cert_path) if self.cert_path else None
        return {"address": self.address, "port": self.port, "scheme": self.scheme, "cert": cert}


class LabWeb:
    """One web server process in the inet namespace serving every listener of the lab.

    The process starts with the first listener. Later listeners are added by
    rewriting the sites file and sending SIGHUP, then waiting for their ports.
    """

    def __init__(
        self,
        *,
        netns: str,
        directory: Path,
        ca: TestCa,
        processes: ProcessTracker,
        startup_timeout: float,
    ) -> None:
        self.netns = netns
        self.directory = directory
        self.ca = ca
        self.processes = processes
        self.startup_timeout = startup_timeout
        self.sites_path = directory / "sites.json"
        self.log_path = directory / "web.log"
        self.listeners: dict[tuple[str, int], Listener] = {}
        self.process: subprocess.Popen[Any] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    def add(
        self, address: str, names: Iterable[str], *, http_port: int | None, https_port: int | None
    ) -> None:
        """Serve ``names`` over HTTP and HTTPS on ``address``. A port of None is skipped."""
        self.add_many([(address, list(names))], http_port=http_port, https_port=https_port)

    def add_many(
        self,
        sites: Iterable[tuple[str, list[str]]],
        *,
        http_port: int | None,
        https_port: int | None,
    ) -> None:
        """Add several (address, names) sites with one reload and one wait."""
        new_endpoints: list[tuple[str, int]] = []
        for address, names in sites:
            for port, scheme in ((http_port, "http"), (https_port, "https")):
                if port is None:
                    continue
                if self._add_listener(address, port, scheme, names):
                    new_endpoints.append((address, port))

        write_atomically(self.sites_path, self._sites_json())
        if self.process is None:
            argv = python_module_argv("tests.lab.web", "--sites", str(self.sites_path))
            self.process = self.processes.spawn(
                netns_argv(self.netns, argv),
                log_path=self.log_path,
                env=server_env(),
                cwd=server_env()["PYTHONPATH"],
            )
        elif new_endpoints:
            os.kill(self.process.pid, signal.SIGHUP)

        wait_for_listeners(
            server="lab web server",
            process=self.process,
            netns=self.netns,
            endpoints=new_endpoints,
            log_path=self.log_path,
            timeout=self.startup_timeout,
        )

    def _add_listener(self, address: str, port: int, scheme: str, names: list[str]) -> bool:
        """Record the listener, write its certificate and return whether it is new."""
        key = (address, port)
        listener = self.listeners.get(key)
        is_new = listener is None
        if listener is None:
            listener = Listener(address, port, scheme)
            self.listeners[key] = listener
        elif listener.scheme != scheme:
            raise WebPortConflictError(address, port, scheme, listener.scheme)

        added = {name.lower().rstrip(".") for name in names} - listener.names
        listener.names |= added
        if scheme == "https" and (added or listener.cert_path is None):
            # The server re-reads this file at the next handshake after it changed.
            listener.cert_path = self.directory / f"cert-{address}-{port}.pem"
            bundle = self.ca.issue(listener.names)
            write_atomically(listener.cert_path, bundle.read_bytes())
        return is_new

    def _sites_json(self) -> bytes:
        listeners = [listener.to_json() for listener in self.listeners.values()]
        return json.dumps({"listeners": listeners}, indent=1).encode()
