"""The egress gateway seen from inside a sandbox: SNI and Host checks with real clients.

Addresses reach the sandbox through its hosts file (bind-mounted by `ip netns exec`),
so they never pass runtad's DNS proxy and only the gateway can let a connection through.
Decisions are read from runtad's `gateway_decision` log events.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.runtad_process import RuntadProcess, SandboxHandle
from tests.lab.topology import Lab

pytestmark = pytest.mark.root

# A denied connection ends with a reset at once, never by a client timeout.
FAST_FAILURE_SECONDS = 1.0
# An address that serves files.pythonhosted.org with a valid certificate but that the
# name does not resolve to: a gateway that skipped the address check would let it through.
STRAY_ADDRESS = "203.0.113.70"
SHARED_NAME = "other.test"  # served on pypi.org's address 192.0.2.10, denied by policy


@pytest.fixture(scope="module")
def gateway_lab(internet: Lab) -> Lab:
    internet.add_web_server(STRAY_ADDRESS, ["files.pythonhosted.org"])
    internet.add_web_server("192.0.2.10", [SHARED_NAME])
    return internet


@pytest.fixture
def wildcard_sandbox(runtad: RuntadProcess, gateway_lab: Lab) -> Iterator[SandboxHandle]:
    yield enforced(runtad, ["*.pythonhosted.org"])


def enforced(runtad: RuntadProcess, hosts: list[str], inspect: str | None = None) -> SandboxHandle:
    sandbox = runtad.create_sandbox()
    assert sandbox.post("allow", hosts).status_code == 200
    if inspect is not None:
        response = runtad.api("PATCH", f"/runtimes/{sandbox.name}/egress", {"inspect": inspect})
        assert response.status_code == 200, response.text
    assert sandbox.post("enable").status_code == 200
    return sandbox


def add_hosts_entry(sandbox: SandboxHandle, address: str, name: str) -> None:
    with open(Path("/etc/netns") / sandbox.netns / "hosts", "a") as hosts:
        hosts.write(f"{address}\t{name}\n")


def decisions(runtad: RuntadProcess, sandbox: SandboxHandle) -> list[dict[str, Any]]:
    return [
        event for event in runtad.log_events()
        if event.get("event") == "gateway_decision" and event.get("runtime") == sandbox.name
    ]  # fmt: skip


def wait_for_decisions(runtad: RuntadProcess, sandbox: SandboxHandle, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    found = decisions(runtad, sandbox)
    while len(found) < count and time.monotonic() < deadline:
        time.sleep(0.05)
        found = decisions(runtad, sandbox)
    return found


def table_rows(sandbox: SandboxHandle, host: str) -> list[dict[str, Any]]:
    for entry in sandbox.egress()["entries"]:
        if entry["host"] == host:
            rows: list[dict[str, Any]] = entry["addresses"]
            return rows
    raise AssertionError(f"{host} is not in the egress table")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def settled_fds(pid: int) -> int:
    """Return the descriptor count once it stays the same for half a second (at most 10 s)."""
    deadline = time.monotonic() + 10
    count = open_fds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        latest = open_fds(pid)
        if latest == count:
            break
        count = latest
    return count


# What a user of the sandbox sees


def test_https_wildcard_through_hosts_file(runtad: RuntadProcess, wildcard_sandbox: SandboxHandle) -> None:
    sandbox = wildcard_sandbox
    add_hosts_entry(sandbox, "192.0.2.11", "files.pythonhosted.org")
    result = sandbox.curl("https://files.pythonhosted.org/packages/x.whl")
    assert result.stdout == "200", result.stderr
    [decision] = wait_for_decisions(runtad, sandbox, 1)
    assert decision["action"] == "allow"
    assert decision["host"] == "files.pythonhosted.org"
    assert decision["destination"] == "192.0.2.11"


def test_sni_hit_appears_in_table(runtad: RuntadProcess, wildcard_sandbox: SandboxHandle) -> None:
    sandbox = wildcard_sandbox
    add_hosts_entry(sandbox, "192.0.2.11", "files.pythonhosted.org")
    assert sandbox.curl("https://files.pythonhosted.org/").stdout == "200"
    deadline = time.monotonic() + 5
    rows = table_rows(sandbox, "*.pythonhosted.org")
    while not rows and time.monotonic() < deadline:
        time.sleep(0.05)
        rows = table_rows(sandbox, "*.pythonhosted.org")
    assert [(row["address"], row["source"]) for row in rows] == [("192.0.2.11", "sni")]
    assert "192.0.2.11" in sandbox.kernel_set()


def test_learned_address_takes_kernel_path(runtad: RuntadProcess, wildcard_sandbox: SandboxHandle) -> None:
    sandbox = wildcard_sandbox
    add_hosts_entry(sandbox, "192.0.2.11", "files.pythonhosted.org")
    assert sandbox.curl("https://files.pythonhosted.org/").stdout == "200"
    wait_for_decisions(runtad, sandbox, 1)
    deadline = time.monotonic() + 5
    while "192.0.2.11" not in sandbox.kernel_set() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sandbox.curl("https://files.pythonhosted.org/").stdout == "200"
    assert len(decisions(runtad, sandbox)) == 1


def test_http_decision_carries_path(runtad: RuntadProcess, wildcard_sandbox: SandboxHandle) -> None:
    sandbox = wildcard_sandbox
    add_hosts_entry(sandbox, "192.0.2.11", "files.pythonhosted.org")
    result = sandbox.run(
        ["curl", "-sS", "--max-time", "10", "http://files.pythonhosted.org/simple/requests/?q=1"]
    )
    assert json.loads(result.stdout)["host"] == "files.pythonhosted.org", result.stderr
    [decision] = wait_for_decisions(runtad, sandbox, 1)
    assert decision["action"] == "allow"
    assert decision["path"] == "/simple/requests/"


def test_https_over_ipv6(runtad: RuntadProcess, wildcard_sandbox: SandboxHandle) -> None:
    sandbox = wildcard_sandbox
    add_hosts_entry(sandbox, "2001:db8::11", "files.pythonhosted.org")
    assert sandbox.curl("https://files.pythonhosted.org/", "-6").stdout == "200"
    [decision] = wait_for_decisions(runtad, sandbox, 1)
    assert decision["destination"] == "2001:db8::11"


def test_sni_case_and_trailing_dot(runtad: RuntadProcess, wildcard_sandbox: SandboxHandle) -> None:
    sandbox = wildcard_sandbox
    add_hosts_entry(sandbox, "192.0.2.11", "Files.PythonHosted.org.")
    result = sandbox.curl("https://Files.PythonHosted.org./")
    assert result.stdout == "200", result.stderr
    [decision] = wait_for_decisions(runtad, sandbox, 1)
    assert decision["host"] == "files.pythonhosted.org"


def test_denied_sni_reset(runtad: RuntadProcess, gateway_lab: Lab) -> None:
    sandbox = enforced(runtad, ["pypi.org"])
    add_hosts_entry(sandbox, "198.51.100.7", "example.com")
    started = time.monotonic()
    result = sandbox.curl("https://example.com/")
    assert result.returncode in (35, 56), result.stderr  # TLS connect error / recv failure
    assert time.monotonic() - started < FAST_FAILURE_SECONDS
    [decision] = wait_for_decisions(runtad, sandbox, 1)
    assert decision["action"] == "deny"
    assert decision["reason"] == "sni_not_allowed"
    assert decision["host"] == "example.com"
    assert decision["destination"] == "198.51.100.7"


def test_denied_host_header_reset(runtad: RuntadProcess, gateway_lab: Lab) -> None:
    sandbox = enforced(runtad, ["pypi.org"])
    add_hosts_entry(sandbox, "198.51.100.7", "example.com")
    result = sandbox.run(["curl", "-sS", "--max-time", "5", "http://example.com/private/x"])
    assert result.returncode in (52, 56), result.stderr  # empty reply / recv failure
    [decision] = wait_for_decisions(runtad, sandbox, 1)
    assert decision["reason"] == "host_header_not_allowed"
    assert decision["path"] == "/private/x"


def test_allowed_sni_at_stray_address(runtad: RuntadProcess, wildcard_sandbox: SandboxHandle) -> None:
    sandbox = wildcard_sandbox
    add_hosts_entry(sandbox, STRAY_ADDRESS, "files.pythonhosted.org")
    result = sandbox.curl("https://files.pythonhosted.org/")
    assert result.stdout != "200"
    [decision] = wait_for_decisions(runtad, sandbox, 1)
    assert decision["reason"] == "sni_address_mismatch"
    assert decision["destination"] == STRAY_ADDRESS


def test_apex_of_wildcard_denied(runtad: RuntadProcess, wildcard_sandbox: SandboxHandle) -> None:
    sandbox = wildcard_sandbox
    add_hosts_entry(sandbox, "192.0.2.13", "pythonhosted.org")
    assert sandbox.curl("https://pythonhosted.org/").stdout != "200"
    [decision] = wait_for_decisions(runtad, sandbox, 1)
    assert decision["reason"] == "sni_not_allowed"


def test_no_sni_denied(runtad: RuntadProcess, wildcard_sandbox: SandboxHandle) -> None:
    sandbox = wildcard_sandbox
    result = sandbox.run(
        ["openssl", "s_client", "-connect", "192.0.2.11:443", "-noservername",
         "-CAfile", str(runtad.lab.ca_cert_path)],
        input="",
    )  # fmt: skip
    assert "no peer certificate available" in result.stdout
    assert result.returncode != 0
    [decision] = wait_for_decisions(runtad, sandbox, 1)
    assert decision["reason"] == "sni_missing"


def test_ip_literal_sni_denied(runtad: RuntadProcess, wildcard_sandbox: SandboxHandle) -> None:
    sandbox = wildcard_sandbox
    sandbox.run(
        ["openssl", "s_client", "-connect", "192.0.2.11:443", "-servername", "192.0.2.11"], input=""
    )
    [decision] = wait_for_decisions(runtad, sandbox, 1)
    assert decision["reason"] == "sni_not_allowed"
    assert decision["host"] == "192.0.2.11"


ECH_CLIENT = """
import socket, struct, sys

def ext(kind, data):
    return struct.pack("!HH", kind, len(data)) + data

name = sys.argv[1].encode()
entry = struct.pack("!BH", 0, len(name)) + name
sni = ext(0, struct.pack("!H", len(entry)) + entry)
ech = ext(0xFE0D, b"\\x00" + struct.pack("!HHB", 1, 1, 7) + struct.pack("!H", 32) + bytes(32)
          + struct.pack("!H", 128) + bytes(128))
exts = sni + ech
body = (struct.pack("!H", 0x0303) + bytes(32) + b"\\x00" + struct.pack("!H", 2) + b"\\x13\\x01"
        + b"\\x01\\x00" + struct.pack("!H", len(exts)) + exts)
hello = b"\\x01" + len(body).to_bytes(3, "big") + body
record = struct.pack("!BHH", 22, 0x0301, len(hello)) + hello
conn = socket.create_connection((sys.argv[2], 443), timeout=5)
conn.sendall(record)
try:
    print("reply", len(conn.recv(100)))
except ConnectionResetError:
    print("reset")
"""


def test_ech_denied(runtad: RuntadProcess, wildcard_sandbox: SandboxHandle) -> None:
    sandbox = wildcard_sandbox
    result = sandbox.run(["python3", "-c", ECH_CLIENT, "ech-public.cdn.test", "192.0.2.11"])
    assert result.stdout.strip() == "reset", result.stderr
    [decision] = wait_for_decisions(runtad, sandbox, 1)
    assert decision["reason"] == "ech_not_allowed"
    assert decision["host"] == "ech-public.cdn.test"


ABSOLUTE_FORM = """
import socket, sys
conn = socket.create_connection(("192.0.2.10", 80), timeout=5)
conn.sendall(b"GET http://other.test/admin HTTP/1.1\\r\\nHost: pypi.org\\r\\n\\r\\n")
try:
    print("reply", len(conn.recv(100)))
except ConnectionResetError:
    print("reset")
"""


def test_http_absolute_form_mismatch(runtad: RuntadProcess, gateway_lab: Lab) -> None:
    sandbox = enforced(runtad, ["pypi.org"], inspect="all")
    result = sandbox.run(["python3", "-c", ABSOLUTE_FORM])
    assert result.stdout.strip() == "reset", result.stderr
    [decision] = wait_for_decisions(runtad, sandbox, 1)
    assert decision["reason"] == "host_mismatch"
    assert decision["path"] == "/admin"


def test_udp_443_rejected(runtad: RuntadProcess, wildcard_sandbox: SandboxHandle) -> None:
    code = (
        "import socket, time\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "s.connect(('192.0.2.11', 443))\n"
        "s.settimeout(2)\n"
        "started = time.monotonic()\n"
        "try:\n"
        "    s.send(b'\\xc0' + bytes(1199))\n"
        "    s.recv(10)\n"
        "    print('open')\n"
        "except OSError as error:\n"
        "    print('rejected', round(time.monotonic() - started, 3), type(error).__name__)\n"
    )
    words = wildcard_sandbox.python(code).stdout.split()
    assert words[0] == "rejected"
    assert float(words[1]) < FAST_FAILURE_SECONDS
    assert words[2] != "TimeoutError"


# Strict mode


def test_strict_denies_second_name_on_allowed_address(runtad: RuntadProcess, gateway_lab: Lab) -> None:
    sandbox = enforced(runtad, ["pypi.org"], inspect="all")
    assert "192.0.2.10" in sandbox.kernel_set()
    result = sandbox.curl(f"https://{SHARED_NAME}/", "--resolve", f"{SHARED_NAME}:443:192.0.2.10")
    assert result.stdout != "200"
    [decision] = wait_for_decisions(runtad, sandbox, 1)
    assert decision["reason"] == "sni_not_allowed"
    assert decision["host"] == SHARED_NAME


def test_first_mode_shared_address_passes(runtad: RuntadProcess, gateway_lab: Lab) -> None:
    # The known limit of the default mode that strict mode closes.
    sandbox = enforced(runtad, ["pypi.org"])
    result = sandbox.curl(f"https://{SHARED_NAME}/", "--resolve", f"{SHARED_NAME}:443:192.0.2.10")
    assert result.stdout == "200"
    assert decisions(runtad, sandbox) == []


def test_strict_allows_and_learns_nothing(runtad: RuntadProcess, gateway_lab: Lab) -> None:
    sandbox = enforced(runtad, ["pypi.org"], inspect="all")
    for _ in range(2):
        assert sandbox.curl("https://pypi.org/").stdout == "200"
    found = wait_for_decisions(runtad, sandbox, 2)
    assert [decision["action"] for decision in found] == ["allow", "allow"]
    assert all(not decision.get("learned") for decision in found)


def test_strict_mode_in_policy_document(runtad: RuntadProcess, gateway_lab: Lab) -> None:
    sandbox = enforced(runtad, ["pypi.org"], inspect="all")
    assert sandbox.egress()["inspect"] == "all"
    response = runtad.api("PATCH", f"/runtimes/{sandbox.name}/egress", {"inspect": "everything"})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "inspect"


def test_removed_host_ends_relay(runtad: RuntadProcess, gateway_lab: Lab) -> None:
    sandbox = enforced(runtad, ["pypi.org", "*.pythonhosted.org"], inspect="all")
    download = sandbox.popen(
        ["curl", "-sS", "--cacert", str(runtad.lab.ca_cert_path), "-o", "/dev/null",
         "-w", "%{http_code}", "https://files.pythonhosted.org/slow?seconds=30"],
        stdout=-1, stderr=-1,
    )  # fmt: skip
    try:
        wait_for_decisions(runtad, sandbox, 1)
        time.sleep(0.5)
        assert sandbox.post("remove", ["*.pythonhosted.org"]).status_code == 200
        _, stderr = download.communicate(timeout=10)
    finally:
        if download.poll() is None:
            download.kill()
            download.wait()
    assert download.returncode != 0
    assert "reset" in stderr.lower() or "recv" in stderr.lower(), stderr


def test_unrelated_removal_keeps_relay(runtad: RuntadProcess, gateway_lab: Lab) -> None:
    sandbox = enforced(runtad, ["pypi.org", "*.pythonhosted.org"], inspect="all")
    download = sandbox.popen(
        ["curl", "-sS", "--cacert", str(runtad.lab.ca_cert_path), "-o", "/dev/null",
         "-w", "%{http_code}", "https://files.pythonhosted.org/slow?seconds=4"],
        stdout=-1, stderr=-1,
    )  # fmt: skip
    try:
        wait_for_decisions(runtad, sandbox, 1)
        time.sleep(0.5)
        assert sandbox.post("remove", ["pypi.org"]).status_code == 200
        stdout, stderr = download.communicate(timeout=20)
    finally:
        if download.poll() is None:
            download.kill()
            download.wait()
    assert download.returncode == 0, stderr
    assert stdout == "200"


# Robustness: nothing a client sends crashes the daemon or leaks a descriptor


HOSTILE_CLIENTS = """
import socket, struct, threading, time

def connect():
    return socket.create_connection(("192.0.2.11", 443), timeout=10)

def outcome(conn):
    try:
        data = conn.recv(10)
        return "closed" if not data else "data"
    except ConnectionResetError:
        return "reset"
    except OSError as error:
        return type(error).__name__

def malformed():
    conn = connect()
    conn.sendall(b"\\x16\\x03\\x01\\x00\\x10\\x02" + bytes(15))
    return outcome(conn)

def oversized():
    conn = connect()
    conn.sendall(b"\\x16\\x03\\x01\\x40\\x00\\x01\\x00\\xff\\xff" + bytes(16000))
    return outcome(conn)

def truncated():
    conn = connect()
    conn.sendall(b"\\x16\\x03\\x01\\x02\\x00\\x01\\x00\\x01\\xfc\\x03\\x03" + bytes(40))
    conn.shutdown(socket.SHUT_WR)
    return outcome(conn)

def slow():
    conn = connect()
    started = time.monotonic()
    try:
        for byte in b"\\x16\\x03\\x01\\x02\\x00\\x01\\x00\\x01\\xfc\\x03\\x03" + bytes(40):
            conn.send(bytes([byte]))
            time.sleep(0.4)
    except (ConnectionResetError, BrokenPipeError):
        return "reset after %.1f s" % (time.monotonic() - started)
    return outcome(conn) + " after %.1f s" % (time.monotonic() - started)

def garbage():
    conn = connect()
    conn.sendall(bytes(range(256)) * 8)
    return outcome(conn)

def silent_close():
    conn = connect()
    conn.close()
    return "closed"

results = {}
def run(name, function):
    try:
        results[name] = function()
    except Exception as error:
        results[name] = "client error " + repr(error)

threads = [threading.Thread(target=run, args=(f.__name__ + str(i), f))
           for f in (malformed, oversized, truncated, slow, garbage, silent_close) for i in range(5)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
for name in sorted(results):
    print(name, results[name])
"""


def test_hostile_first_flights_leave_nothing(runtad: RuntadProcess, wildcard_sandbox: SandboxHandle) -> None:
    sandbox = wildcard_sandbox
    assert runtad.process is not None
    pid = runtad.process.pid
    before = settled_fds(pid)

    result = sandbox.run(["python3", "-c", HOSTILE_CLIENTS], timeout=60)
    outcomes = dict(line.split(" ", 1) for line in result.stdout.splitlines())

    assert len(outcomes) == 30, result.stderr
    for name, outcome in outcomes.items():
        if name.startswith("slow"):
            assert outcome.startswith("reset after"), (name, outcome)
            assert 4.0 <= float(outcome.split()[2]) <= 8.0, (name, outcome)
        elif not name.startswith("silent_close"):
            assert outcome == "reset", (name, outcome)
    assert runtad.process.poll() is None
    assert settled_fds(pid) == before
    reasons = {decision["reason"] for decision in wait_for_decisions(runtad, sandbox, 30)}
    assert reasons <= {"first_flight_invalid", "first_flight_timeout"}
    assert "first_flight_timeout" in reasons


# Keeps the gateway port busy inside a namespace for up to 30 s.
PORT_HOLDER = """
import socket, time
s = socket.socket()
s.bind(("127.0.0.1", 1017))
s.listen(1)
print("ready", flush=True)
time.sleep(30)
"""


def test_adopted_netns_with_port_taken(runtad: RuntadProcess, gateway_lab: Lab) -> None:
    name = f"{runtad.netns_prefix}adopt"
    subprocess.run(["ip", "netns", "add", name], check=True)
    holder = subprocess.Popen(
        ["ip", "netns", "exec", name, sys.executable, "-c", PORT_HOLDER],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready"
        response = runtad.api("POST", "/runtimes", {"name": "adopted1", "netns": name})
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "gateway_unavailable"
        assert "1017" in response.json()["error"]["message"]
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_gateway_listener_not_reachable_directly(runtad: RuntadProcess, wildcard_sandbox: SandboxHandle) -> None:
    code = (
        "import socket\n"
        "try:\n"
        "    conn = socket.create_connection(('127.0.0.1', 1017), timeout=5)\n"
        "    conn.sendall(b'GET / HTTP/1.1\\r\\nHost: files.pythonhosted.org\\r\\n\\r\\n')\n"
        "    print('data', len(conn.recv(10)))\n"
        "except ConnectionResetError:\n"
        "    print('reset')\n"
    )
    result = wildcard_sandbox.python(code)
    assert result.stdout.strip() == "reset", result.stderr
    assert decisions(runtad, wildcard_sandbox) == []
