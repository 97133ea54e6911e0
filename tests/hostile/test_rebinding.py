"""DNS rebinding: an allowed name whose answer points at loopback, link-local, the cloud
metadata address or the host's own addresses.

Such answers are refused by default: runtad strips those addresses from the answer,
keeps them out of the sets and records an answer_address_denied event. Otherwise a sandbox
that may reach one name under a wildcard could reach the host's own services on any port.
The settings denied_answer_networks and deny_host_answers turn the check off.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import add_common_hosts
from tests.e2e.runtad_process import RuntadProcess, SandboxHandle
from tests.hostile.attempts import (
    enforced_sandbox,
    exec_in,
    nft_table,
    probe,
    runtime_document,
    wait_for_event,
)
from tests.lab.netns import is_tcp_listening
from tests.lab.topology import HOST_V4, Lab

pytestmark = pytest.mark.root

SERVICE_PORT = 8081
SERVICE_SECONDS = 60.0
# A service of the host itself, reachable on the host's addresses only.
HOST_SERVICE = r"""
import socket, sys, time
address, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
family = socket.AF_INET6 if ":" in address else socket.AF_INET
with socket.socket(family, socket.SOCK_STREAM) as server:
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((address, port))
    server.listen(16)
    server.settimeout(0.5)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            conn, _ = server.accept()
        except socket.timeout:
            continue
        with conn:
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 13\r\n\r\nhost service\n")
"""


def rebound_name(runtad: RuntadProcess, rdtype: str, address: str) -> str:
    """Make a fresh name under the allowed *.pythonhosted.org answer with address."""
    name = f"rb{secrets.token_hex(4)}.pythonhosted.org"
    runtad.lab.dns.set_records(name, rdtype, [address], 300)
    return name


def target_address(runtad: RuntadProcess, sandbox: SandboxHandle, target: str) -> str:
    """Resolve the symbolic targets that depend on the sandbox's own veth pair."""
    host_sides = runtime_document(runtad, sandbox.name)["gateway"]
    return {"veth4": host_sides[0], "veth6": host_sides[1]}.get(target, target)


@pytest.fixture
def host_service(runtad: RuntadProcess) -> Iterator[Callable[[str, int], None]]:
    """Yield a function that starts a service in the lab's host namespace on address:port."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(address: str, port: int) -> None:
        process = runtad.lab.spawn(
            runtad.lab.host_netns,
            [sys.executable, "-c", HOST_SERVICE, address, str(port), str(SERVICE_SECONDS)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        processes.append(process)
        deadline = time.monotonic() + 5
        while not is_tcp_listening(runtad.lab.host_netns, address, port):
            assert process.poll() is None, "the host service exited at start"
            assert time.monotonic() < deadline, f"the host service is not listening on {address}"
            time.sleep(0.05)

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=5)


@pytest.mark.parametrize(
    ("rdtype", "target"),
    [
        ("A", "127.0.0.1"),
        ("A", "169.254.169.254"),
        ("A", "169.254.1.1"),
        ("A", "veth4"),  # the host's end of this sandbox's veth pair
        ("A", "10.213.0.1"),  # the host's end of the first sandbox's veth pair
        ("A", HOST_V4),  # the host's uplink address
        ("AAAA", "::1"),
        ("AAAA", "fe80::1"),
        ("AAAA", "veth6"),
    ],
)
def test_rebound_answer_kept_out_of_sets(runtad: RuntadProcess, rdtype: str, target: str) -> None:
    sandbox = enforced_sandbox(runtad, ["*.pythonhosted.org"])
    address = target_address(runtad, sandbox, target)
    name = rebound_name(runtad, rdtype, address)

    answer = exec_in(runtad, sandbox.name, "nobody", ["dig", "+short", name, rdtype])

    set_name = "allow6" if rdtype == "AAAA" else "allow4"
    assert address not in nft_table(sandbox.netns)["sets"][set_name]
    assert address not in answer.stdout.split()


def test_rebound_answer_audited(runtad: RuntadProcess) -> None:
    sandbox = enforced_sandbox(runtad, ["*.pythonhosted.org"])
    name = rebound_name(runtad, "A", "169.254.169.254")

    exec_in(runtad, sandbox.name, "nobody", ["dig", "+short", name])

    event = wait_for_event(
        runtad, sandbox.name,
        lambda item: item["reason"] == "answer_address_denied" and item["host"] == name,
    )  # fmt: skip
    assert event is not None
    assert event["action"] == "deny"
    assert "169.254.169.254" in event["message"]


def test_rebinding_check_can_be_turned_off(tmp_path: Path) -> None:
    with Lab() as world:
        daemon = RuntadProcess(
            add_common_hosts(world), tmp_path, denied_answer_networks=[], deny_host_answers=False
        )
        daemon.start()
        try:
            sandbox = enforced_sandbox(daemon, ["*.pythonhosted.org"])
            name = rebound_name(daemon, "A", "169.254.169.254")

            answer = exec_in(daemon, sandbox.name, "nobody", ["dig", "+short", name])

            assert "169.254.169.254" in answer.stdout.split()
            assert "169.254.169.254" in nft_table(sandbox.netns)["sets"]["allow4"]
        finally:
            daemon.close()


def test_rebound_name_opens_host_service(
    runtad: RuntadProcess, host_service: Callable[[str, int], None]
) -> None:
    sandbox = enforced_sandbox(runtad, ["*.pythonhosted.org"])
    veth4 = target_address(runtad, sandbox, "veth4")
    host_service(veth4, SERVICE_PORT)
    before = probe(runtad, sandbox.name, "nobody", "tcp", veth4, str(SERVICE_PORT))
    name = rebound_name(runtad, "A", veth4)

    exec_in(runtad, sandbox.name, "nobody", ["dig", "+short", name])
    after = probe(runtad, sandbox.name, "nobody", "tcp", veth4, str(SERVICE_PORT))

    assert before.outcome == "ECONNREFUSED"
    assert after.outcome == "ECONNREFUSED"


def test_rebound_host_header_opens_host_service(
    runtad: RuntadProcess, host_service: Callable[[str, int], None]
) -> None:
    sandbox = enforced_sandbox(runtad, ["*.pythonhosted.org"])
    veth4 = target_address(runtad, sandbox, "veth4")
    host_service(veth4, 80)
    name = rebound_name(runtad, "A", veth4)
    request = f"GET / HTTP/1.1\\r\\nHost: {name}\\r\\n\\r\\n"

    # The sandbox never resolves the name: the gateway looks it up itself.
    result = probe(runtad, sandbox.name, "nobody", "tcp", veth4, "80", request)

    assert result.outcome == "ECONNRESET"


def test_address_added_to_host_later_is_denied(runtad: RuntadProcess) -> None:
    sandbox = enforced_sandbox(runtad, ["*.pythonhosted.org"])
    new_address = "203.0.113.250"  # not on the host when runtad started
    subprocess.run(
        ["ip", "-n", runtad.lab.host_netns, "addr", "add", f"{new_address}/32", "dev", "lo"], check=True
    )
    try:
        # runtad reads the host's addresses every HOST_ADDRESS_INTERVAL (10 s).
        deadline = time.monotonic() + 25
        while True:
            name = rebound_name(runtad, "A", new_address)
            answer = exec_in(runtad, sandbox.name, "nobody", ["dig", "+short", name])
            if new_address not in answer.stdout.split():
                break
            assert time.monotonic() < deadline, "an address the host gained is still answered"
            time.sleep(1)
        event = wait_for_event(
            runtad, sandbox.name,
            lambda item: item["reason"] == "answer_address_denied" and item["host"] == name,
        )  # fmt: skip
        assert event is not None
    finally:
        subprocess.run(["ip", "-n", runtad.lab.host_netns, "addr", "del", f"{new_address}/32", "dev", "lo"])
