"""A real runtad inside a lab's host namespace, and helpers to drive it as a user would."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.lab.topology import Lab

REPO_ROOT = Path(__file__).resolve().parents[2]
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
START_TIMEOUT = 15.0


class RuntadProcess:
    """One runtad with its own state directory, socket and sandbox namespace prefix."""

    def __init__(self, lab: Lab, work_dir: Path, **settings: Any) -> None:
        self.lab = lab
        self.work_dir = work_dir
        self.netns_prefix = f"rt{secrets.token_hex(3)}-"
        self.socket_path = work_dir / "runtad.sock"
        self.state_dir = work_dir / "state"
        self.log_path = work_dir / "runtad.log"
        self.config_path = work_dir / "runtad.toml"
        values: dict[str, Any] = {
            "netns_prefix": self.netns_prefix,
            "upstream_dns": [lab.dns_address],
            "state_dir": str(self.state_dir),
            "socket_path": str(self.socket_path),
            **settings,
        }
        self.config_path.write_text(
            "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())
        )
        self.process: subprocess.Popen[Any] | None = None
        self.sandboxes: set[str] = set()

    # --- process ----------------------------------------------------------------------

    def start(self) -> "RuntadProcess":
        log = open(self.log_path, "a")
        self.process = self.lab.spawn(
            self.lab.host_netns,
            [
                sys.executable,
                "-m",
                "runtad",
                "--config",
                str(self.config_path),
                "--log-level",
                "debug",
            ],
            share_mounts=True,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(REPO_ROOT),
        )
        log.close()
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"runtad exited with {self.process.returncode}:\n{self.log_text()}"
                )
            try:
                with socket.socket(socket.AF_UNIX) as probe:
                    probe.connect(str(self.socket_path))
                return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(
            f"runtad did not open {self.socket_path} in {START_TIMEOUT} s:\n{self.log_text()}"
        )

    def stop(self) -> None:
        """SIGTERM and wait, as systemd would."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=15)

    def kill9(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text()
        except OSError:
            return ""

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log_text().splitlines():
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return events

    def close(self) -> None:
        """Stop runtad and delete the sandboxes it made, through its own API."""
        try:
            if self.process is not None and self.process.poll() is not None:
                self.start()
            for name in list(self.sandboxes):
                self.api("DELETE", f"/runtimes/{name}")
        except Exception:
            pass
        finally:
            self.stop()
            for netns in Path("/run/netns").glob(f"{self.netns_prefix}*"):
                subprocess.run(["ip", "netns", "del", netns.name], check=False, capture_output=True)
            # runtad removes these with each sandbox it deletes; a killed runtad leaves them.
            for directory in Path("/etc/netns").glob(f"{self.netns_prefix}*"):
                shutil.rmtree(directory, ignore_errors=True)

    # --- clients ----------------------------------------------------------------------

    def cli(
        self, *args: str, timeout: float = 60, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run the runta CLI as a user would, with the socket from --socket."""
        return subprocess.run(
            [sys.executable, "-m", "runta.cli", "--socket", str(self.socket_path), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
            cwd=str(REPO_ROOT),
        )

    def api(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        transport = httpx.HTTPTransport(uds=str(self.socket_path))
        with httpx.Client(transport=transport, base_url="http://runtad/v1", timeout=60) as client:
            return client.request(method, path, json=body, headers=headers)

    def create_sandbox(self, name: str | None = None) -> "SandboxHandle":
        name = name or f"sb{secrets.token_hex(3)}"
        response = self.api("POST", "/runtimes", {"name": name})
        assert response.status_code == 201, response.text
        self.sandboxes.add(name)
        return SandboxHandle(self, name, response.json()["netns"])


class SandboxHandle:
    """Run real clients inside one sandbox, with a clean environment."""

    def __init__(self, daemon: RuntadProcess, name: str, netns_path: str) -> None:
        self.daemon = daemon
        self.name = name
        self.netns_path = netns_path
        self.netns = Path(netns_path).name

    def run(
        self, argv: list[str], timeout: float = 30, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        env = {"PATH": CLEAN_PATH, "HOME": "/root", "LANG": "C.UTF-8"}
        return subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                self.netns,
                "env",
                "-i",
                *[f"{k}={v}" for k, v in env.items()],
                *argv,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            **kwargs,
        )

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["ip", "netns", "exec", self.netns, "env", "-i", f"PATH={CLEAN_PATH}", *argv],
            text=True,
            **kwargs,
        )

    def curl(self, url: str, *extra: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
        """curl with the lab's CA; stdout is the HTTP status code."""
        return self.run(
            [
                "curl",
                "-sS",
                "--max-time",
                str(timeout),
                "--cacert",
                str(self.daemon.lab.ca_cert_path),
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                *extra,
                url,
            ],
            timeout=timeout + 5,
        )

    def dig(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(["dig", "+time=2", "+tries=1", *args])

    def python(self, code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.run([sys.executable, "-c", code], timeout=timeout)

    def egress(self) -> dict[str, Any]:
        response = self.daemon.api("GET", f"/runtimes/{self.name}/egress")
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def post(self, action: str, hosts: list[str] | None = None) -> httpx.Response:
        body = {"hosts": hosts} if hosts is not None else None
        return self.daemon.api("POST", f"/runtimes/{self.name}/egress/{action}", body)

    def kernel_set(self) -> str:
        completed = subprocess.run(
            ["ip", "netns", "exec", self.netns, "nft", "list", "table", "inet", "runta"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return completed.stdout


def environment_without_ca_overrides() -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.endswith(("_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR"))
    }
    return env
