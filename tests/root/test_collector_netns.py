"""The NFLOG collector against real nft and NFLOG: every logged packet is stored or counted lost."""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtad.audit import collector as collector_module
from runtad.audit.collector import REACHED_COUNTER, Collector
from runtad.audit.model import EgressEvent, Reason
from runtad.audit.recorder import Recorder
from runtad.audit.store import AuditDatabase
from runtad.audit.writer import AuditWriter, WriterSettings
from runtad.nflog import open_in_netns
from runtad.nft import NftContext

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(shutil.which("nft") is None, reason="needs the nft command"),
]

GROUP = 7
COMMAND_TIMEOUT = 30
# A small receive buffer and a consumer slower than the sender make the socket overflow.
SMALL_RCVBUF = 64 * 1024
SLOW_EVENT_SECONDS = 0.001
FLOOD_PACKETS = 20_000
SMALL_FLOOD_PACKETS = 200
# The collector is idle once no event arrived for this long, or at the deadline.
QUIET_SECONDS = 1.0
SETTLE_TIMEOUT = 60.0

# Each packet goes to a new port, so conntrack sees a new flow every time. The counter sits
# just before the log statement, as in rules/sandbox.json.
RULESET = f"""
table inet runta {{
  counter log_suppressed {{
  }}
  counter {REACHED_COUNTER} {{
  }}
  chain output {{
    type filter hook output priority 0; policy accept;
    ct state new counter name "{REACHED_COUNTER}" log prefix "runta deny " group {GROUP}
    ct state new reject
  }}
}}
"""

UDP_FLOOD = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for index in range(int(sys.argv[1])):
    try:
        s.sendto(b"runta", ("192.0.2.99", 1024 + index % 60000))
    except OSError:
        pass
"""

COUNT_BY_REASON = (
    "SELECT total(json_extract(payload, '$.count')) FROM audits"
    " WHERE json_extract(payload, '$.reason') = ?"
)


def run_in(netns: str, *argv: str, stdin: str | None = None) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", netns, *argv], input=stdin, capture_output=True, text=True,
        timeout=COMMAND_TIMEOUT, check=True,
    ).stdout


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"rtc-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=COMMAND_TIMEOUT)
    try:
        run_in(name, "ip", "link", "set", "lo", "up")
        # A veth pair with both ends inside, because some kernels lack the dummy driver.
        run_in(name, "ip", "link", "add", "rtc0", "type", "veth", "peer", "name", "rtc1")
        run_in(name, "ip", "link", "set", "rtc0", "up")
        run_in(name, "ip", "link", "set", "rtc1", "up")
        run_in(name, "ip", "addr", "add", "192.0.2.1/24", "dev", "rtc0")
        run_in(name, "nft", "-f", "-", stdin=RULESET)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=COMMAND_TIMEOUT)


@pytest.fixture
def small_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        collector_module, "open_in_netns", functools.partial(open_in_netns, rcvbuf=SMALL_RCVBUF)
    )


def counter_packets(netns: str) -> int:
    listing = run_in(netns, "nft", "list", "counter", "inet", "runta", REACHED_COUNTER)
    # The listing has a line "packets N bytes M".
    words = listing.split()
    return int(words[words.index("packets") + 1])


def stored_count(database: Path, reason: Reason) -> int:
    with sqlite3.connect(database) as connection:
        return int(connection.execute(COUNT_BY_REASON, (str(reason),)).fetchone()[0])


class Outcome:
    def __init__(self, database: Path, logged: int, overruns: int) -> None:
        self.stored = stored_count(database, Reason.DIRECT_IP_NOT_ALLOWED)
        self.lost = stored_count(database, Reason.EVENTS_LOST)
        self.logged = logged
        self.overruns = overruns


def flood_and_collect(netns: str, packets: int, tmp_path: Path, *, slow: bool) -> Outcome:
    """Flood from the netns while a collector stores events with folding on; stop it when quiet."""
    database = tmp_path / "audit.db"
    writer = AuditWriter(lambda: AuditDatabase(database), WriterSettings(log_lines=False))
    writer.start()
    submitted = 0

    def submit(event: EgressEvent) -> bool:
        nonlocal submitted
        submitted += 1
        if slow:
            # A consumer slower than the sender, as when other processes take the CPU.
            time.sleep(SLOW_EVENT_SECONDS)
        return writer.submit(event)

    async def scenario() -> int:
        nft = NftContext.open(Path(f"/run/netns/{netns}"))
        collector = Collector(Recorder("sb1", submit), Path(f"/run/netns/{netns}"), GROUP, nft,
                              poll_seconds=3600)
        await collector.start()
        assert collector._socket is not None
        await asyncio.to_thread(run_in, netns, sys.executable, "-c", UDP_FLOOD, str(packets))
        seen, quiet_since = -1, time.monotonic()
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while time.monotonic() - quiet_since < QUIET_SECONDS and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            if submitted != seen:
                seen, quiet_since = submitted, time.monotonic()
        overruns = collector._socket.stats.overruns
        await collector.stop()
        nft.try_close()
        return overruns

    try:
        overruns = asyncio.run(scenario())
        assert writer.flush(timeout=30)
    finally:
        writer.close()
    return Outcome(database, counter_packets(netns), overruns)


def test_collector_overflow_counts_every_packet(
    netns: str, small_buffer: None, tmp_path: Path
) -> None:
    outcome = flood_and_collect(netns, FLOOD_PACKETS, tmp_path, slow=True)
    assert outcome.logged == FLOOD_PACKETS
    assert outcome.overruns > 0
    assert outcome.lost > 0
    assert outcome.stored + outcome.lost == outcome.logged


def test_collector_small_flood_loses_none(netns: str, tmp_path: Path) -> None:
    outcome = flood_and_collect(netns, SMALL_FLOOD_PACKETS, tmp_path, slow=False)
    assert outcome.logged == SMALL_FLOOD_PACKETS
    assert outcome.lost == 0
    assert outcome.stored == SMALL_FLOOD_PACKETS
