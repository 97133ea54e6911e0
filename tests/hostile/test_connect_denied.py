"""Connections from an enforced sandbox to addresses outside its sets: rejected at once, audited.

Every attempt runs through `runta sandbox exec` as nobody and as root of a user
namespace of its own. Addresses come from the documentation ranges of the lab, the
sandbox's own veth pair and the cloud metadata address, which the lab routes into its
own "internet" namespace.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.e2e.runtad_process import RuntadProcess
from tests.hostile.attempts import (
    CALLERS,
    EXEC_SECONDS,
    FAST_SECONDS,
    denial_at,
    enforced_sandbox,
    probe,
    runtime_document,
    wait_for_event,
)

pytestmark = pytest.mark.root

DENIED_V4 = "198.51.100.7"  # example.com in the lab, never allowed here
DENIED_V6 = "2001:db8::7"
DENIED = [DENIED_V4, DENIED_V6]
METADATA = "169.254.169.254"
HTTP_REQUEST = "GET /latest/meta-data/ HTTP/1.1\\r\\nHost: 169.254.169.254\\r\\n\\r\\n"


@pytest.mark.parametrize("caller", CALLERS)
def test_tcp_other_port_rejected(runtad: RuntadProcess, caller: str) -> None:
    sandbox = enforced_sandbox(runtad, ["pypi.org"])

    results = {
        address: probe(runtad, sandbox.name, caller, "tcp", address, "8080") for address in DENIED
    }

    assert {address: result.outcome for address, result in results.items()} == dict.fromkeys(
        DENIED, "ECONNREFUSED"
    )
    assert max(result.seconds for result in results.values()) < FAST_SECONDS
    assert max(result.wall_seconds for result in results.values()) < EXEC_SECONDS
    for address in DENIED:
        event = wait_for_event(runtad, sandbox.name, denial_at(address, 8080))
        assert event is not None, f"no deny event for {address} port 8080"
        assert event["reason"] == "direct_ip_not_allowed"
        assert event["source"] == "kernel"


@pytest.mark.parametrize("caller", CALLERS)
def test_udp_rejected(runtad: RuntadProcess, caller: str) -> None:
    sandbox = enforced_sandbox(runtad, ["pypi.org"])

    results = {
        address: probe(runtad, sandbox.name, caller, "udp", address, "9999") for address in DENIED
    }

    # The output chain's ICMP admin-prohibited reject reaches the sender as EPERM.
    assert {address: result.outcome for address, result in results.items()} == dict.fromkeys(
        DENIED, "EPERM"
    )
    assert max(result.seconds for result in results.values()) < FAST_SECONDS
    for address in DENIED:
        event = wait_for_event(runtad, sandbox.name, denial_at(address, 9999))
        assert event is not None, f"no deny event for {address} port 9999"
        assert event["protocol"] == "udp"


def test_quic_rejected(runtad: RuntadProcess) -> None:
    sandbox = enforced_sandbox(runtad, ["pypi.org"])

    results = {
        address: probe(runtad, sandbox.name, "nobody", "udp", address, "443", "quic-initial")
        for address in DENIED
    }

    assert {address: result.outcome for address, result in results.items()} == dict.fromkeys(
        DENIED, "EPERM"
    )
    assert max(result.seconds for result in results.values()) < FAST_SECONDS
    for address in DENIED:
        event = wait_for_event(runtad, sandbox.name, denial_at(address, 443))
        assert event is not None, f"no deny event for UDP to {address} port 443"
        assert event["protocol"] == "udp"


def test_icmp_echo_rejected(runtad: RuntadProcess) -> None:
    sandbox = enforced_sandbox(runtad, ["pypi.org"])
    # Let unprivileged ICMP echo sockets exist, as many hosts do, so the echo is sent
    # and the ruleset has to stop it. This is the test's setup, done from outside.
    subprocess.run(
        ["ip", "netns", "exec", sandbox.netns, "sysctl", "-qw",
         "net.ipv4.ping_group_range=0 2147483647"],
        check=True, timeout=10,
    )  # fmt: skip

    results = {
        address: probe(runtad, sandbox.name, "nobody", "icmp_echo", address) for address in DENIED
    }

    # IPv4 refuses the send (EPERM); IPv6 reports the admin-prohibited error (EACCES).
    assert results[DENIED_V4].outcome == "EPERM"
    assert results[DENIED_V6].outcome == "EACCES"
    assert max(result.seconds for result in results.values()) < FAST_SECONDS
    for address in DENIED:
        event = wait_for_event(runtad, sandbox.name, denial_at(address, None))
        assert event is not None, f"no deny event for ICMP echo to {address}"


# (family, type, protocol) of sockets that bypass the ruleset's port and address view.
RAW_SOCKETS = [
    ("AF_INET", "SOCK_RAW", "1"),  # raw ICMP
    ("AF_INET", "SOCK_RAW", "255"),  # IPPROTO_RAW: hand-made IP headers
    ("AF_INET6", "SOCK_RAW", "58"),  # raw ICMPv6
    ("AF_PACKET", "SOCK_RAW", "768"),  # htons(ETH_P_ALL): whole frames
    ("AF_PACKET", "SOCK_DGRAM", "768"),
]


@pytest.mark.parametrize("caller", CALLERS)
def test_raw_sockets_rejected(runtad: RuntadProcess, caller: str) -> None:
    sandbox = enforced_sandbox(runtad, ["pypi.org"])

    results = {spec: probe(runtad, sandbox.name, caller, "socket", *spec) for spec in RAW_SOCKETS}

    assert {spec: result.outcome for spec, result in results.items()} == dict.fromkeys(
        RAW_SOCKETS, "EPERM"
    )
    assert max(result.seconds for result in results.values()) < FAST_SECONDS


@pytest.mark.parametrize("caller", CALLERS)
def test_metadata_http_reset(runtad: RuntadProcess, caller: str) -> None:
    sandbox = enforced_sandbox(runtad, ["pypi.org"])

    result = probe(runtad, sandbox.name, caller, "tcp", METADATA, "80", HTTP_REQUEST)

    assert result.outcome in ("ECONNRESET", "closed")
    assert result.seconds < FAST_SECONDS
    event = wait_for_event(runtad, sandbox.name, denial_at(METADATA, 80))
    assert event is not None
    assert event["source"] == "gateway"


@pytest.mark.parametrize("caller", CALLERS)
def test_metadata_other_ports_rejected(runtad: RuntadProcess, caller: str) -> None:
    sandbox = enforced_sandbox(runtad, ["pypi.org"])
    # 22 ssh, 8080 and 8775 (OpenStack's metadata API) over TCP; 80 over UDP.
    ports = ["22", "8080", "8775"]

    results = {port: probe(runtad, sandbox.name, caller, "tcp", METADATA, port) for port in ports}
    udp = probe(runtad, sandbox.name, caller, "udp", METADATA, "80")

    assert {port: result.outcome for port, result in results.items()} == dict.fromkeys(
        ports, "ECONNREFUSED"
    )
    assert udp.outcome == "EPERM"
    assert max(result.seconds for result in [*results.values(), udp]) < FAST_SECONDS
    for port in [*ports, "80"]:
        event = wait_for_event(runtad, sandbox.name, denial_at(METADATA, int(port)))
        assert event is not None, f"no deny event for {METADATA} port {port}"
        assert event["reason"] == "direct_ip_not_allowed"


@pytest.mark.parametrize("caller", CALLERS)
def test_veth_host_side_rejected(runtad: RuntadProcess, caller: str) -> None:
    sandbox = enforced_sandbox(runtad, ["pypi.org"])
    # The host's ends of the sandbox's veth pair, IPv4 and IPv6.
    host_sides = runtime_document(runtad, sandbox.name)["gateway"]
    # 22 ssh, 1017 runtad's gateway port (it listens on loopback only), 9100 a common
    # exporter; over UDP 123 (NTP).
    tcp_ports = ["22", "1017", "9100"]
    attempts = [
        (host_side, port, probe(runtad, sandbox.name, caller, "tcp", host_side, port))
        for host_side in host_sides
        for port in tcp_ports
    ]
    attempts += [
        (host_side, "123", probe(runtad, sandbox.name, caller, "udp", host_side, "123"))
        for host_side in host_sides
    ]

    outcomes = {(host_side, port): result.outcome for host_side, port, result in attempts}
    expected = {
        (host_side, port): "EPERM" if port == "123" else "ECONNREFUSED"
        for host_side, port, _ in attempts
    }
    assert outcomes == expected
    assert max(result.seconds for _, _, result in attempts) < FAST_SECONDS
    for host_side, port, _ in attempts:
        event = wait_for_event(runtad, sandbox.name, denial_at(host_side, int(port)))
        assert event is not None, f"no deny event for {host_side} port {port}"


def test_veth_host_side_http_reset(runtad: RuntadProcess) -> None:
    sandbox = enforced_sandbox(runtad, ["pypi.org"])
    host_side = runtime_document(runtad, sandbox.name)["gateway"][0]
    request = f"GET / HTTP/1.1\\r\\nHost: {host_side}\\r\\n\\r\\n"

    result = probe(runtad, sandbox.name, "nobody", "tcp", host_side, "80", request)

    assert result.outcome in ("ECONNRESET", "closed")
    assert result.seconds < FAST_SECONDS
    event = wait_for_event(runtad, sandbox.name, denial_at(host_side, 80))
    assert event is not None
    assert event["source"] == "gateway"
