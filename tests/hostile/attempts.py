"""Escape attempts run inside a sandbox through `runta sandbox exec`, and their audit trail.

An attempt runs as one of three callers:

- ``nobody``: an ordinary user (`runta sandbox exec NAME --user nobody -- ...`);
- ``userns_root``: that user as root of a user namespace of its own
  (`... --user nobody -- unshare --user --map-root-user ...`);
- ``root``: uid 0 as `runta sandbox exec NAME -- ...` runs it without --user, with
  CAP_NET_ADMIN, CAP_NET_RAW and CAP_SYS_ADMIN dropped from the bounding set.

Socket attempts run a small Python program in the sandbox that prints one JSON line:
the outcome (an errno name such as ECONNREFUSED, or "answered", "closed", "opened",
"timeout") and the seconds the attempt took inside the sandbox.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from runta.cli_exec import build_exec_argv, resolve_user
from tests.e2e.runtad_process import REPO_ROOT, RuntadProcess, SandboxHandle

# An interpreter that the user nobody may run: /root holds the test runner's own Python.
SYSTEM_PYTHON = "/usr/bin/python3"
CALLERS = ("nobody", "userns_root")
# A denied attempt ends with a reset, ICMP error or EPERM at once; one second is the
# bound the end-to-end tests use for "fails fast".
FAST_SECONDS = 1.0
# Wall-clock bound of one `runta sandbox exec` (CLI start-up, namespace entry, probe).
EXEC_SECONDS = 10.0
# The audit writer folds repeats for 2 s by default and then writes: 6 s covers both.
EVENT_WAIT_SECONDS = 6.0
# Seconds a probe waits for a reply before it reports "timeout" instead of hanging.
PROBE_TIMEOUT = 3.0

PROBE_SOURCE = r"""
import errno, json, socket, sys, time

TIMEOUT = float(sys.argv[1])


def family_of(address):
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def tcp(address, port, payload=""):
    with socket.socket(family_of(address), socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.connect((address, int(port)))
        if payload:
            sock.sendall(payload.encode().decode("unicode_escape").encode("latin-1"))
        return "answered" if sock.recv(64) else "closed"


def udp(address, port, payload="x"):
    with socket.socket(family_of(address), socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.connect((address, int(port)))
        sock.send(payload.encode())
        sock.recv(64)
        return "answered"


def icmp_echo(address):
    if ":" in address:
        family, proto, echo = socket.AF_INET6, socket.IPPROTO_ICMPV6, 128
    else:
        family, proto, echo = socket.AF_INET, socket.IPPROTO_ICMP, 8
    with socket.socket(family, socket.SOCK_DGRAM, proto) as sock:
        sock.settimeout(TIMEOUT)
        # IP_RECVERR (11) and IPV6_RECVERR (25): report ICMP errors, as ping does.
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, 25, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, 11, 1)
        sock.sendto(bytes([echo, 0, 0, 0, 0, 1, 0, 1]) + b"runta", (address, 0))
        sock.recv(64)
        return "answered"


def open_socket(family, kind, proto):
    socket.socket(getattr(socket, family), getattr(socket, kind), int(proto)).close()
    return "opened"


ATTEMPTS = {"tcp": tcp, "udp": udp, "icmp_echo": icmp_echo, "socket": open_socket}
started = time.monotonic()
try:
    outcome = ATTEMPTS[sys.argv[2]](*sys.argv[3:])
except socket.timeout:
    outcome = "timeout"
except OSError as error:
    outcome = errno.errorcode.get(error.errno, str(error.errno))
print(json.dumps({"outcome": outcome, "seconds": time.monotonic() - started}))
"""


@dataclass(frozen=True)
class ProbeResult:
    """What one socket attempt inside a sandbox ended with."""

    outcome: str  # errno name, or "answered", "closed", "opened", "timeout"
    seconds: float  # measured inside the sandbox
    wall_seconds: float  # the whole `runta sandbox exec`, CLI start-up included


@dataclass(frozen=True)
class ExecResult:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def caller_argv(caller: str, argv: Sequence[str]) -> list[str]:
    """Return the `runta sandbox exec` arguments after the sandbox name for caller."""
    if caller == "nobody":
        return ["--user", "nobody", "--", *argv]
    if caller == "userns_root":
        return ["--user", "nobody", "--", "unshare", "--user", "--map-root-user", *argv]
    if caller == "root":
        return ["--", *argv]
    if caller == "host_root":
        return ["--host-root", "--", *argv]
    raise ValueError(f"unknown caller {caller!r}: use nobody, userns_root, root or host_root")


def exec_in(
    runtad: RuntadProcess, name: str, caller: str, argv: Sequence[str], timeout: float = 30
) -> ExecResult:
    """Run argv in the sandbox through the runta CLI, as a user of the product would."""
    started = time.monotonic()
    completed = runtad.cli("sandbox", "exec", name, *caller_argv(caller, argv), timeout=timeout)
    return ExecResult(
        completed.returncode, completed.stdout, completed.stderr, time.monotonic() - started
    )


def exec_offline(
    sandbox: SandboxHandle, caller: str, argv: Sequence[str], timeout: float = 30
) -> ExecResult:
    """Run argv as `runta sandbox exec` would, without asking runtad (for while it is down).

    The command line comes from the CLI's own builder, so the capabilities dropped and the
    user switched are the same as through the daemon.
    """
    user = resolve_user("nobody") if caller in ("nobody", "userns_root") else None
    command = list(argv)
    if caller == "userns_root":
        command = ["unshare", "--user", "--map-root-user", *command]
    started = time.monotonic()
    completed = subprocess.run(
        build_exec_argv(sandbox.netns_path, command, user),
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    return ExecResult(
        completed.returncode, completed.stdout, completed.stderr, time.monotonic() - started
    )


def probe_offline(sandbox: SandboxHandle, caller: str, attempt: str, *args: str) -> ProbeResult:
    """Run one socket attempt in the sandbox without asking runtad."""
    argv = [SYSTEM_PYTHON, "-c", PROBE_SOURCE, str(PROBE_TIMEOUT), attempt, *args]
    return _probe_result(exec_offline(sandbox, caller, argv), attempt, args)


def start_in(
    runtad: RuntadProcess, name: str, caller: str, argv: Sequence[str]
) -> subprocess.Popen[str]:
    """Start argv in the sandbox through the runta CLI and return at once (output piped)."""
    return subprocess.Popen(
        [sys.executable, "-m", "runta.cli", "--socket", str(runtad.socket_path),
         "sandbox", "exec", name, *caller_argv(caller, argv)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(REPO_ROOT),
    )  # fmt: skip


def probe(runtad: RuntadProcess, name: str, caller: str, attempt: str, *args: str) -> ProbeResult:
    """Run one socket attempt in the sandbox and return its outcome."""
    argv = [SYSTEM_PYTHON, "-c", PROBE_SOURCE, str(PROBE_TIMEOUT), attempt, *args]
    return _probe_result(exec_in(runtad, name, caller, argv), attempt, args)


def _probe_result(result: ExecResult, attempt: str, args: Sequence[str]) -> ProbeResult:
    assert result.returncode == 0, f"probe {attempt} {list(args)} failed: {result.stderr}"
    line = json.loads(result.stdout.strip().splitlines()[-1])
    return ProbeResult(str(line["outcome"]), float(line["seconds"]), result.seconds)


def enforced_sandbox(runtad: RuntadProcess, hosts: list[str]) -> SandboxHandle:
    sandbox = runtad.create_sandbox()
    assert sandbox.post("allow", hosts).status_code == 200
    assert sandbox.post("enable").status_code == 200
    return sandbox


def runtime_document(runtad: RuntadProcess, name: str) -> dict[str, Any]:
    response = runtad.api("GET", f"/runtimes/{name}")
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def events_of(runtad: RuntadProcess, name: str) -> list[dict[str, Any]]:
    """Return the newest 1,000 audit events of a sandbox, newest first."""
    transport = httpx.HTTPTransport(uds=str(runtad.socket_path))
    with httpx.Client(transport=transport, base_url="http://runtad/v1", timeout=30) as client:
        response = client.get(f"/runtimes/{name}/egress/events", params={"limit": 1000})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def wait_for_event(
    runtad: RuntadProcess,
    name: str,
    match: Callable[[dict[str, Any]], bool],
    seconds: float = EVENT_WAIT_SECONDS,
) -> dict[str, Any] | None:
    """Return the first stored event that match accepts, polling for up to seconds."""
    deadline = time.monotonic() + seconds
    while True:
        for event in events_of(runtad, name):
            if match(event):
                return event
        if time.monotonic() > deadline:
            return None
        time.sleep(0.2)


def denial_at(address: str, port: int | None) -> Callable[[dict[str, Any]], bool]:
    """Return a matcher for a deny event naming address (and port, unless None)."""

    def match(event: dict[str, Any]) -> bool:
        if event["action"] != "deny" or event["address"] != address:
            return False
        return port is None or event["port"] == port

    return match


def lab_queries(runtad: RuntadProcess) -> list[str]:
    """Return every query name the lab's DNS server has seen, lower case, no final dot."""
    return [query["qname"].lower().rstrip(".") for query in runtad.lab.dns.queries()]


def nft_table(netns: str) -> dict[str, Any]:
    """Return `nft -j list table inet runta` of a namespace, grouped by kind."""
    completed = subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "-j", "list", "table", "inet", "runta"],
        capture_output=True, text=True, timeout=10, check=True,
    )  # fmt: skip
    grouped: dict[str, Any] = {"chains": {}, "rules": {}, "sets": {}}
    for item in json.loads(completed.stdout)["nftables"]:
        if "chain" in item:
            grouped["chains"][item["chain"]["name"]] = item["chain"]
        elif "rule" in item:
            grouped["rules"].setdefault(item["rule"]["chain"], []).append(item["rule"]["expr"])
        elif "set" in item:
            elements = item["set"].get("elem", [])
            grouped["sets"][item["set"]["name"]] = sorted(
                str(element["elem"]["val"]) if isinstance(element, dict) else str(element)
                for element in elements
            )
    return grouped


def rule_shape(netns: str) -> dict[str, list[str]]:
    """Return each chain's rules as JSON text with packet counts left out."""
    shape: dict[str, list[str]] = {}
    for chain, rules in nft_table(netns)["rules"].items():
        shape[chain] = [
            json.dumps([_without_counts(expr) for expr in rule], sort_keys=True) for rule in rules
        ]
    return shape


def _without_counts(expr: dict[str, Any]) -> dict[str, Any]:
    # An anonymous counter lists its packets and bytes; a named one is only its name.
    if isinstance(expr.get("counter"), dict):
        return {"counter": None}
    return expr


def request_raw(runtad: RuntadProcess, method: str, path: str, body: dict[str, Any]) -> int | None:
    """Send one API request on a plain unix socket; return the status, None if the daemon died.

    For requests that race a kill: the socket is always closed, whatever happens to runtad.
    """
    payload = json.dumps(body).encode()
    head = (
        f"{method} /v1{path} HTTP/1.1\r\nHost: runtad\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(60)
        try:
            conn.connect(str(runtad.socket_path))
            conn.sendall(head + payload)
            reply = conn.recv(64)
        except OSError:
            return None
    parts = reply.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
