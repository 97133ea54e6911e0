"""NFLOG sockets in real network namespaces: records, rate limits, overruns, isolation."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from runtad import nflog
from runtad.nflog import (
    LogRecord,
    NetnsSwitchError,
    NflogBindError,
    NflogOpenTimeout,
    NflogSocket,
    open_in_netns,
    read_loop,
)

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(shutil.which("nft") is None, reason="needs the nft command"),
]

GROUP = 7
COMMAND_TIMEOUT = 20
# The kernel flushes a partial batch after FLUSH_TIMEOUT_CS (100 ms). Wait well beyond it.
SETTLE_SECONDS = 0.5
COLLECT_TIMEOUT = 5.0

DENY_RULESET = f"""
table inet runta {{
  chain output {{
    type filter hook output priority 0; policy accept;
    ct state new log prefix "runta deny " group {GROUP}
    ct state new reject
  }}
}}
"""

# Packets above the limit skip the log statement and reach the counter, so logged plus
# suppressed is every new flow.
RATE_LIMITED_RULESET = f"""
table inet runta {{
  counter log_suppressed {{
  }}
  chain log_new {{
    limit rate 10/second burst 5 packets log prefix "runta deny " group {GROUP} return
    counter name "log_suppressed"
  }}
  chain output {{
    type filter hook output priority 0; policy accept;
    ct state new jump log_new
    ct state new reject
  }}
}}
"""

TCP_CONNECT = """
import socket
s = socket.socket()
s.settimeout(5)
try:
    s.connect(("192.0.2.99", 443))
except OSError:
    pass
"""

UDP6_SEND = """
import socket
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
try:
    s.sendto(b"runta", ("2001:db8::99", 53))
except OSError:
    pass
"""

UDP_FLOOD = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(int(sys.argv[1])):
    try:
        s.sendto(b"runta", ("192.0.2.99", 9))
    except OSError:
        pass
"""


@dataclass
class Netns:
    name: str

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"

    def run(self, *argv: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            ["ip", "netns", "exec", self.name, *argv],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=True,
        )
        return result.stdout

    def python(self, code: str, *args: str) -> None:
        self.run(sys.executable, "-c", code, *args)

    def load_ruleset(self, ruleset: str) -> None:
        self.run("nft", "-f", "-", stdin=ruleset)

    def counter_packets(self, name: str) -> int:
        listing = json.loads(self.run("nft", "-j", "list", "counter", "inet", "runta", name))
        (counter,) = [item["counter"] for item in listing["nftables"] if "counter" in item]
        return int(counter["packets"])


@dataclass
class NetnsFactory:
    created: list[Netns] = field(default_factory=list)

    def create(self) -> Netns:
        ns = Netns(f"rtn-{secrets.token_hex(4)}")
        subprocess.run(["ip", "netns", "add", ns.name], check=True, timeout=COMMAND_TIMEOUT)
        self.created.append(ns)
        ns.run("ip", "link", "set", "lo", "up")
        # A veth pair with both ends inside, because some kernels (this test machine's among
        # them) lack the dummy driver.
        ns.run("ip", "link", "add", "rtn0", "type", "veth", "peer", "name", "rtn1")
        ns.run("ip", "link", "set", "rtn0", "up")
        ns.run("ip", "link", "set", "rtn1", "up")
        ns.run("ip", "addr", "add", "192.0.2.1/24", "dev", "rtn0")
        ns.run("ip", "addr", "add", "2001:db8::1/64", "dev", "rtn0", "nodad")
        return ns

    def delete_all(self) -> None:
        for ns in self.created:
            subprocess.run(["ip", "netns", "del", ns.name], check=False, timeout=COMMAND_TIMEOUT)


@pytest.fixture
def netns_factory() -> Iterator[NetnsFactory]:
    factory = NetnsFactory()
    try:
        yield factory
    finally:
        factory.delete_all()


@pytest.fixture
def deny_ns(netns_factory: NetnsFactory) -> Netns:
    ns = netns_factory.create()
    ns.load_ruleset(DENY_RULESET)
    return ns


@pytest.fixture
def deny_sock(deny_ns: Netns) -> Iterator[NflogSocket]:
    sock = open_in_netns(deny_ns.path, GROUP)
    try:
        yield sock
    finally:
        sock.close()


@dataclass
class Collected:
    records: list[LogRecord] = field(default_factory=list)
    lost: int = 0


def collect(sock: NflogSocket, count: int, timeout: float = COLLECT_TIMEOUT) -> Collected:
    """Read until `count` records arrived, then once more after the flush timeout."""
    collected = Collected()
    deadline = time.monotonic() + timeout
    while len(collected.records) < count and time.monotonic() < deadline:
        records, lost = sock.read_pending()
        collected.records.extend(records)
        collected.lost += lost
        time.sleep(0.02)
    time.sleep(SETTLE_SECONDS)
    records, lost = sock.read_pending()
    collected.records.extend(records)
    collected.lost += lost
    return collected


def test_tcp_connect_logged(deny_ns: Netns, deny_sock: NflogSocket) -> None:
    deny_ns.python(TCP_CONNECT)
    collected = collect(deny_sock, 1)
    assert collected.lost == 0
    (record,) = collected.records
    assert record.prefix == "runta deny "
    assert record.family == 4
    assert record.protocol == "tcp"
    assert record.src == "192.0.2.1"
    assert record.dst == "192.0.2.99"
    assert record.dport == 443
    assert record.uid == 0
    assert record.gid == 0
    assert record.seq == 0


def test_udp6_datagram_logged(deny_ns: Netns, deny_sock: NflogSocket) -> None:
    deny_ns.python(UDP6_SEND)
    collected = collect(deny_sock, 1)
    assert collected.lost == 0
    (record,) = collected.records
    assert record.prefix == "runta deny "
    assert record.family == 6
    assert record.protocol == "udp"
    assert record.src == "2001:db8::1"
    assert record.dst == "2001:db8::99"
    assert record.dport == 53
    assert record.uid == 0


def test_read_loop_delivers_records(deny_ns: Netns, deny_sock: NflogSocket) -> None:
    deliveries: list[tuple[list[LogRecord], int]] = []

    async def scenario() -> None:
        task = asyncio.create_task(
            read_loop(deny_sock, lambda records, lost: deliveries.append((records, lost)))
        )
        await asyncio.to_thread(deny_ns.python, TCP_CONNECT)
        await asyncio.to_thread(deny_ns.python, UDP6_SEND)
        deadline = time.monotonic() + COLLECT_TIMEOUT
        while sum(len(records) for records, _ in deliveries) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    records = [record for batch, _ in deliveries for record in batch]
    assert [(record.protocol, record.dport) for record in records] == [("tcp", 443), ("udp", 53)]
    assert sum(lost for _, lost in deliveries) == 0


def test_read_loop_ends_on_callback_error(deny_ns: Netns, deny_sock: NflogSocket) -> None:
    def on_records(records: list[LogRecord], lost: int) -> None:
        raise LookupError("audit store unavailable")

    async def scenario() -> None:
        task = asyncio.create_task(read_loop(deny_sock, on_records))
        await asyncio.to_thread(deny_ns.python, TCP_CONNECT)
        await asyncio.wait_for(task, COLLECT_TIMEOUT)

    with pytest.raises(LookupError):
        asyncio.run(scenario())


def test_rate_limit_counted_by_nft(netns_factory: NetnsFactory) -> None:
    ns = netns_factory.create()
    ns.load_ruleset(RATE_LIMITED_RULESET)
    with open_in_netns(ns.path, GROUP) as sock:
        ns.python(UDP_FLOOD, "200")
        collected = collect(sock, 200, timeout=1.0)
        suppressed = ns.counter_packets("log_suppressed")
        assert 0 < len(collected.records) < 200
        assert len(collected.records) + suppressed == 200
        assert collected.lost == 0
        assert sock.stats.overruns == 0
        assert sock.stats.seq_gaps == 0


def test_overflow_reports_overrun(netns_factory: NetnsFactory) -> None:
    ns = netns_factory.create()
    ns.load_ruleset(DENY_RULESET)
    with open_in_netns(ns.path, GROUP, rcvbuf=1) as sock:
        ns.python(UDP_FLOOD, "2000")
        time.sleep(SETTLE_SECONDS)
        first = collect(sock, 2000, timeout=0.5)
        assert len(first.records) < 2000
        assert first.lost > 0
        assert sock.stats.overruns > 0


def test_overflow_shows_sequence_gap(netns_factory: NetnsFactory) -> None:
    ns = netns_factory.create()
    ns.load_ruleset(DENY_RULESET)
    with open_in_netns(ns.path, GROUP, rcvbuf=1) as sock:
        ns.python(UDP_FLOOD, "2000")
        time.sleep(SETTLE_SECONDS)
        before = collect(sock, 2000, timeout=0.5)
        ns.python(UDP_FLOOD, "1")
        after = collect(sock, 1)
        assert len(after.records) == 1
        assert sock.stats.seq_gaps == 2000 - len(before.records)
        assert after.records[0].seq == 2000


def test_group_isolated_per_netns(netns_factory: NetnsFactory) -> None:
    first = netns_factory.create()
    second = netns_factory.create()
    first.load_ruleset(DENY_RULESET)
    second.load_ruleset(DENY_RULESET)
    with (
        open_in_netns(first.path, GROUP) as first_sock,
        open_in_netns(second.path, GROUP) as second_sock,
    ):
        first.python(TCP_CONNECT)
        second.python(UDP6_SEND)
        first_records = collect(first_sock, 1).records
        second_records = collect(second_sock, 1).records
    assert [record.protocol for record in first_records] == ["tcp"]
    assert [record.protocol for record in second_records] == ["udp"]


def test_same_group_twice_in_netns_fails(deny_ns: Netns, deny_sock: NflogSocket) -> None:
    with pytest.raises(NflogBindError) as raised:
        open_in_netns(deny_ns.path, GROUP)
    assert raised.value.group == GROUP
    assert raised.value.errno == errno.EPERM


def test_unbind_group_stops_records(deny_ns: Netns, deny_sock: NflogSocket) -> None:
    instances_before = deny_ns.run("cat", "/proc/net/netfilter/nfnetlink_log")
    deny_sock.unbind_group()
    deny_ns.python(TCP_CONNECT)
    assert f"    {GROUP} " in instances_before
    assert deny_ns.run("cat", "/proc/net/netfilter/nfnetlink_log") == ""
    assert collect(deny_sock, 1, timeout=0.3).records == []


def test_bind_pf_still_logs(deny_ns: Netns) -> None:
    with open_in_netns(deny_ns.path, GROUP, bind_pf=True) as sock:
        deny_ns.python(TCP_CONNECT)
        records = collect(sock, 1).records
    assert [record.dport for record in records] == [443]


def test_open_keeps_caller_netns(deny_ns: Netns) -> None:
    own = os.stat("/proc/thread-self/ns/net").st_ino
    target = os.stat(deny_ns.path).st_ino
    with open_in_netns(deny_ns.path, GROUP):
        assert os.stat("/proc/thread-self/ns/net").st_ino == own
    assert own != target


def test_open_timeout_closes_late_socket(deny_ns: Netns) -> None:
    # The bind waits until the caller has given up, so the socket always arrives late.
    gave_up = threading.Event()

    def late_create() -> NflogSocket:
        gave_up.wait(COLLECT_TIMEOUT)
        sock = NflogSocket()
        sock.bind_group(GROUP)
        return sock

    with pytest.raises(NflogOpenTimeout):
        nflog._call_in_netns(deny_ns.path, late_create, 0.05)
    gave_up.set()

    # The worker closes its socket when it finishes, which releases the group.
    reopened = None
    deadline = time.monotonic() + COLLECT_TIMEOUT
    while reopened is None and time.monotonic() < deadline:
        try:
            reopened = open_in_netns(deny_ns.path, GROUP)
        except NflogBindError:
            time.sleep(0.05)
    assert reopened is not None
    reopened.close()


def test_open_missing_netns_raises() -> None:
    with pytest.raises(NetnsSwitchError) as raised:
        open_in_netns(f"/run/netns/rtn-missing-{secrets.token_hex(4)}", GROUP)
    assert raised.value.step == "open"
    assert raised.value.errno == errno.ENOENT


def test_open_non_netns_path_raises() -> None:
    with pytest.raises(NetnsSwitchError) as raised:
        open_in_netns("/proc/self/ns/uts", GROUP)
    assert raised.value.step == "enter"
    assert raised.value.errno == errno.EINVAL


def test_bind_group_in_coroutine_raises() -> None:
    async def scenario() -> None:
        with NflogSocket() as sock:
            sock.bind_group(GROUP)

    with pytest.raises(RuntimeError, match="worker thread"):
        asyncio.run(scenario())
