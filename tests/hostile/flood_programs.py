"""Python programs that the flood tests run inside sandboxes, and the measuring around them.

Each program is bounded in count and seconds and prints one JSON line when it ends.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Self

import httpx

from tests.e2e.runtad_process import RuntadProcess

# Shared by the programs below: a DNS query for one name and type A, built by hand so
# that the program needs nothing beyond the standard library.
DNS_QUERY = r"""
import struct

def dns_query(message_id, name):
    header = struct.pack("!HHHHHH", message_id & 0xFFFF, 0x0100, 1, 0, 0, 0)
    labels = b"".join(bytes([len(label)]) + label.encode() for label in name.split("."))
    return header + labels + b"\0" + struct.pack("!HH", 1, 1)
"""

# argv: total queries, seconds, server address, zone. Sends queries for distinct names
# under zone from 8 sockets at an even pace, counts replies, prints
# {"sent", "answered", "seconds"}.
DNS_FLOOD = (
    DNS_QUERY
    + r"""
import json, os, socket, sys, threading, time

total, seconds, server, zone = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(8)]
answered = [0] * len(sockets)
stop_at = time.monotonic() + seconds + 3


def drain(index):
    sockets[index].settimeout(0.5)
    while time.monotonic() < stop_at:
        try:
            sockets[index].recv(512)
            answered[index] += 1
        except socket.timeout:
            pass
        except OSError:
            time.sleep(0.01)


threads = [threading.Thread(target=drain, args=(index,), daemon=True) for index in range(len(sockets))]
for thread in threads:
    thread.start()
started = time.monotonic()
tag = os.getpid()
for index in range(total):
    try:
        sockets[index % len(sockets)].sendto(dns_query(index, f"q{index}t{tag}.{zone}"), (server, 53))
    except OSError:
        pass
    if index % 100 == 99:
        pause = started + seconds * (index + 1) / total - time.monotonic()
        if pause > 0:
            time.sleep(pause)
elapsed = time.monotonic() - started
for thread in threads:
    thread.join()
print(json.dumps({"sent": total, "answered": sum(answered), "seconds": elapsed}))
"""
)

# argv: seconds, interval, server address, name. Queries name one at a time and prints
# {"latencies": [...seconds of each answered query], "lost": count, "rcodes": [...]}.
DNS_LATENCY = (
    DNS_QUERY
    + r"""
import json, socket, sys, time

seconds, interval, server, name = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(2.0)
latencies, rcodes, lost = [], set(), 0
end = time.monotonic() + seconds
index = 0
while time.monotonic() < end:
    index += 1
    query = dns_query(index, name)
    started = time.monotonic()
    sock.sendto(query, (server, 53))
    try:
        while True:
            reply = sock.recv(512)
            if reply[:2] == query[:2]:
                break
        latencies.append(time.monotonic() - started)
        rcodes.add(reply[3] & 0x0F)
    except socket.timeout:
        lost += 1
    time.sleep(interval)
print(json.dumps({"latencies": latencies, "lost": lost, "rcodes": sorted(rcodes)}))
"""
)

# argv: total connections, seconds, address. Connects to address on ports 10000-29999
# (never 80 or 443, so the kernel and not the gateway rejects them) and UDP to the same.
DENIED_FLOOD = r"""
import json, socket, sys, time

total, seconds, address = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
outcomes = {}
started = time.monotonic()
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for index in range(total):
    port = 10000 + index % 20000
    try:
        if index % 2:
            udp.sendto(b"x", (address, port))
            outcome = "sent"
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.settimeout(2.0)
                sock.connect((address, port))
                outcome = "connected"
    except OSError as error:
        outcome = type(error).__name__
    outcomes[outcome] = outcomes.get(outcome, 0) + 1
    if index % 100 == 99:
        pause = started + seconds * (index + 1) / total - time.monotonic()
        if pause > 0:
            time.sleep(pause)
print(json.dumps({"outcomes": outcomes, "seconds": time.monotonic() - started}))
"""

# argv: connections, hold seconds, address, extra connections. Opens that many TCP
# connections to address:80 and sends nothing, so each occupies a gateway slot while the
# gateway waits for its first flight. Then tries the extra ones and records how each
# ended; prints {"held", "extra": {outcome: count}, "extra_seconds": max seconds}.
GATEWAY_HOLD = r"""
import json, socket, sys, time

count, hold, address, extra = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], int(sys.argv[4])
held = []
for _ in range(count):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(5.0)
    try:
        sock.connect((address, 80))
        held.append(sock)
    except OSError:
        sock.close()
time.sleep(1.0)
outcomes, slowest = {}, 0.0
for _ in range(extra):
    started = time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(5.0)
        try:
            sock.connect((address, 80))
            sock.sendall(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
            outcome = "answered" if sock.recv(64) else "closed"
        except OSError as error:
            outcome = type(error).__name__
    slowest = max(slowest, time.monotonic() - started)
    outcomes[outcome] = outcomes.get(outcome, 0) + 1
print(json.dumps({"held": len(held), "extra": outcomes, "extra_seconds": slowest}), flush=True)
time.sleep(hold)
for sock in held:
    sock.close()
"""

# argv: count, address, host. Sends one HTTP request per connection to address:80 and
# prints {"latencies": [...], "outcomes": {...}}: the gateway's time to decide.
GATEWAY_LATENCY = r"""
import json, socket, sys, time

count, address, host = int(sys.argv[1]), sys.argv[2], sys.argv[3]
latencies, outcomes = [], {}
for _ in range(count):
    started = time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(5.0)
        try:
            sock.connect((address, 80))
            sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            outcome = "answered" if sock.recv(64) else "closed"
        except OSError as error:
            outcome = type(error).__name__
    latencies.append(time.monotonic() - started)
    outcomes[outcome] = outcomes.get(outcome, 0) + 1
    time.sleep(0.05)
print(json.dumps({"latencies": latencies, "outcomes": outcomes}))
"""


@dataclass(frozen=True)
class Percentiles:
    p50: float
    p99: float
    count: int

    @classmethod
    def of(cls, samples: list[float]) -> Percentiles:
        assert samples, "no samples were taken"
        if len(samples) == 1:
            return cls(samples[0], samples[0], 1)
        cuts = statistics.quantiles(samples, n=100, method="inclusive")
        return cls(cuts[49], cuts[98], len(samples))

    def text(self) -> str:
        return f"p50 {self.p50 * 1000:.1f} ms, p99 {self.p99 * 1000:.1f} ms over {self.count}"


def finish(process: subprocess.Popen[str], timeout: float) -> dict:  # type: ignore[type-arg]
    """Wait for a program started with start_in and return its JSON line."""
    stdout, stderr = process.communicate(timeout=timeout)
    assert process.returncode == 0, f"program failed ({process.returncode}): {stderr}"
    result: dict = json.loads(stdout.strip().splitlines()[-1])  # type: ignore[type-arg]
    return result


@dataclass
class ApiTimer:
    """GET /v1/status in a loop on a thread, recording each request's seconds."""

    runtad: RuntadProcess
    interval: float = 0.05
    samples: list[float] = field(default_factory=list)
    failures: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=30)

    def _run(self) -> None:
        transport = httpx.HTTPTransport(uds=str(self.runtad.socket_path))
        with httpx.Client(transport=transport, base_url="http://runtad/v1", timeout=10) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    ok = client.get("/status").status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    self.samples.append(time.monotonic() - started)
                else:
                    self.failures += 1
                self._stop.wait(self.interval)
