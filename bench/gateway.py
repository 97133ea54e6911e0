"""The egress gateway against the kernel's direct path, in the same run on the same server.

Two sandboxes of one runtad allow the same exact host. The first uses the default mode,
so the host's address is in the kernel set and connections go straight out (the
baseline). The second uses strict mode (``inspect: all``), so every TCP 80/443
connection passes the gateway: read the first flight, check Host or SNI and address,
connect from the sandbox, splice. Figures:

- bulk download over HTTP (a sendfile server) and HTTPS (the lab's web server): MB/s;
- time to first byte of a small HTTP response on a new connection (median of many):
  the gateway's added latency;
- new connections per second, each carrying one small request;
- 1,000 connections held open at once through one sandbox's gateway: how many finish;
- daemon RSS before and after 100,000 short connections through the gateway.

Run it alone with ``python -m bench.gateway`` (JSON on stdout), or as a part of
``python -m bench gateway``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.context import BenchContext
from bench.daemon import BenchDaemon
from bench.procfs import open_file_count, rss_mib
from bench.results import Goal, PartResult, Row
from bench.stats import median
from tests.e2e.runtad_process import SandboxHandle
from tests.lab.processes import wait_for_listeners
from tests.lab.topology import Lab

TOOLS: tuple[str, ...] = ("curl",)
BUDGET_SECONDS = 900.0
SMOKE_BUDGET_SECONDS = 120.0

BULK_HOST = "bulk.gateway.test"
BULK_ADDRESS = "192.0.2.51"  # the sendfile server (plain HTTP)
TLS_HOST = "tls.gateway.test"
TLS_ADDRESS = "192.0.2.52"  # the lab's web server (HTTPS)

FULL: dict[str, Any] = {
    "download_bytes": 1 << 30, "tls_download_bytes": 256 << 20, "download_runs": 3,
    "ttfb_requests": 500, "rate_seconds": 5.0, "held": 1000, "churn": 100_000,
}  # fmt: skip
SMOKE: dict[str, Any] = {
    "download_bytes": 64 << 20, "tls_download_bytes": 16 << 20, "download_runs": 1,
    "ttfb_requests": 50, "rate_seconds": 1.0, "held": 100, "churn": 2_000,
}  # fmt: skip

# Serves GET /bytes/N with sendfile from a sparse file, GET /hold?ms=M after a delay,
# anything else with a 2-byte body; one request per connection.
SERVER = r"""
import asyncio, os, sys
address, path = sys.argv[1], sys.argv[2]
size = int(sys.argv[3])
with open(path, "wb") as f:
    f.truncate(size)

async def serve(reader, writer):
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        target = head.split(b" ", 2)[1].decode()
        if target.startswith("/bytes/"):
            count = int(target[7:])
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % count)
            await writer.drain()
            with open(path, "rb") as f:
                await asyncio.get_running_loop().sendfile(writer.transport, f, 0, count)
        else:
            if target.startswith("/hold?ms="):
                await asyncio.sleep(int(target[9:]) / 1000)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
    except (OSError, asyncio.IncompleteReadError, ValueError):
        pass
    finally:
        writer.close()

async def main():
    server = await asyncio.start_server(serve, address, 80, backlog=4096)
    await asyncio.sleep(3600)

asyncio.run(main())
"""

# Time to first byte of one small response on a new connection, N times in a row.
TTFB_CLIENT = r"""
import json, socket, sys, time
address, host, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
request = b"GET /small HTTP/1.1\r\nHost: %s\r\n\r\n" % host.encode()
samples, errors = [], 0
for _ in range(count):
    started = time.perf_counter()
    try:
        with socket.create_connection((address, 80), timeout=5) as conn:
            conn.sendall(request)
            if conn.recv(1):
                samples.append(time.perf_counter() - started)
            while conn.recv(65536):
                pass
    except OSError:
        errors += 1
print(json.dumps({"samples": samples, "errors": errors}))
"""

# Connections opened, used for one request and closed, by `workers` concurrent tasks,
# until `limit` connections have begun or `seconds` have passed. With as many workers as
# the limit and a /hold path, every connection is open at the same time.
LOAD_CLIENT = r"""
import asyncio, json, sys, time
address, host, workers, limit, seconds, path = sys.argv[1:7]
workers, limit, seconds = int(workers), int(limit), float(seconds)
request = b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path.encode(), host.encode())
done = errors = begun = 0
started = time.monotonic()

async def one():
    global done, errors
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(address, 80), 30)
        writer.write(request)
        body = await asyncio.wait_for(reader.read(), 60)
        writer.close()
        if body.startswith(b"HTTP/1.1 200") and body.endswith(b"ok"):
            done += 1
        else:
            errors += 1
    except (OSError, asyncio.TimeoutError):
        errors += 1

async def worker():
    global begun
    while begun < limit and time.monotonic() - started < seconds:
        begun += 1
        await one()

async def main():
    await asyncio.gather(*(worker() for _ in range(workers)))

asyncio.run(main())
elapsed = time.monotonic() - started
print(json.dumps({"done": done, "errors": errors, "seconds": elapsed}))
"""


def start_bulk_server(lab: Lab, work_dir: Path, size: int) -> None:
    lab.add_server_address(BULK_ADDRESS)
    process = lab.spawn(
        lab.inet_netns, [sys.executable, "-c", SERVER, BULK_ADDRESS, str(work_dir / "bulk.bin"), str(size)]
    )
    wait_for_listeners(
        server="gateway bench server", process=process, netns=lab.inet_netns,
        endpoints=[(BULK_ADDRESS, 80)], log_path=None, timeout=15,
    )  # fmt: skip


def sandbox_with(daemon: BenchDaemon, inspect: str) -> SandboxHandle:
    sandbox = daemon.create_sandbox()
    with daemon.client() as client:
        response = client.put(
            f"/runtimes/{sandbox.name}/egress",
            json={"enabled": True, "allowed_hosts": [BULK_HOST, TLS_HOST], "inspect": inspect},
        )
        response.raise_for_status()
    return sandbox


def download_speed(sandbox: SandboxHandle, url: str, cacert: Path, timeout: float) -> float:
    """Return curl's average download speed in MB/s (10^6 bytes per second)."""
    result = sandbox.run(
        ["curl", "-sS", "--cacert", str(cacert), "-o", "/dev/null", "-w", "%{speed_download}", url],
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(f"curl {url} failed in {sandbox.name}: {result.stderr.strip()}")
    return float(result.stdout) / 1e6


def run_json(sandbox: SandboxHandle, script: str, *args: str, timeout: float) -> dict[str, Any]:
    result = sandbox.run([sys.executable, "-c", script, *args], timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"bench client failed in {sandbox.name}: {result.stderr.strip()[-2000:]}")
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def measure_downloads(
    context: BenchContext, result: PartResult, direct: SandboxHandle, gateway: SandboxHandle,
    cacert: Path, sizes: dict[str, int],
) -> None:  # fmt: skip
    runs = sizes["download_runs"]
    for label, url, unit_note in (
        ("HTTP", f"http://{BULK_HOST}/bytes/{sizes['download_bytes']}", "sendfile server"),
        ("HTTPS", f"https://{TLS_HOST}/bytes/{sizes['tls_download_bytes']}", "lab web server (Python TLS)"),
    ):
        speeds: dict[str, list[float]] = {"direct": [], "gateway": []}
        # One unmeasured download per path first: the server's file pages, the TLS
        # certificate cache and the gateway's name cache start warm for both.
        download_speed(direct, url, cacert, 300)
        download_speed(gateway, url, cacert, 300)
        for _ in range(runs):
            context.check_budget()
            # Alternate the paths so that drift on a shared machine hits both alike.
            speeds["direct"].append(download_speed(direct, url, cacert, 300))
            speeds["gateway"].append(download_speed(gateway, url, cacert, 300))
        context.log(f"{label} download MB/s: {json.dumps(speeds)}")
        result.samples[f"download_{label.lower()}_mb_s"] = speeds
        result.add(Row(
            name=f"{label} bulk download", unit="MB/s", baseline_name="direct kernel path",
            baseline=median(speeds["direct"]), value=median(speeds["gateway"]),
            goal=Goal("ratio", ">=", 0.85, ">= 0.85 of direct"),
            note=f"median of {runs}, {unit_note}",
        ))  # fmt: skip


def measure_ttfb(
    context: BenchContext, result: PartResult, direct: SandboxHandle, gateway: SandboxHandle, count: int
) -> None:
    context.check_budget()
    figures = {}
    for name, sandbox in (("direct", direct), ("gateway", gateway)):
        data = run_json(sandbox, TTFB_CLIENT, BULK_ADDRESS, BULK_HOST, str(count), timeout=120)
        figures[name] = data
        context.log(f"TTFB {name}: median {median(data['samples']) * 1000:.3f} ms, errors {data['errors']}")
    result.samples["ttfb_ms"] = {
        name: sorted(round(sample * 1000, 4) for sample in data["samples"]) for name, data in figures.items()
    }
    direct_ms = median(figures["direct"]["samples"]) * 1000
    gateway_ms = median(figures["gateway"]["samples"]) * 1000
    result.add(Row(
        name="time to first byte, new connection", unit="ms", baseline_name="direct kernel path",
        baseline=direct_ms, value=gateway_ms, higher_is_better=False,
        note=f"median of {count}; errors direct {figures['direct']['errors']}, gateway {figures['gateway']['errors']}",
    ))  # fmt: skip
    result.add(Row(
        name="time to first byte added by the gateway", unit="ms", baseline_name="none",
        baseline=None, value=gateway_ms - direct_ms, higher_is_better=False,
        goal=Goal("value", "<=", 2.0, "<= 2 ms"),
    ))  # fmt: skip


def measure_connection_rate(
    context: BenchContext, result: PartResult, direct: SandboxHandle, gateway: SandboxHandle, seconds: float
) -> None:
    context.check_budget()
    rates = {}
    for name, sandbox in (("direct", direct), ("gateway", gateway)):
        data = run_json(
            sandbox, LOAD_CLIENT, BULK_ADDRESS, BULK_HOST, "32", "1000000", str(seconds), "/small",
            timeout=seconds + 120,
        )  # fmt: skip
        rates[name] = data
        context.log(f"connections {name}: {json.dumps(data)}")
    result.samples["connection_rate"] = rates
    result.add(Row(
        name="new connections per second (one request each)", unit="conn/s",
        baseline_name="direct kernel path",
        baseline=rates["direct"]["done"] / rates["direct"]["seconds"],
        value=rates["gateway"]["done"] / rates["gateway"]["seconds"],
        note=f"32 concurrent Python clients; errors direct {rates['direct']['errors']}, gateway {rates['gateway']['errors']}",
    ))  # fmt: skip


def measure_held(
    context: BenchContext, result: PartResult, daemon: BenchDaemon, gateway: SandboxHandle, count: int
) -> None:
    context.check_budget()
    before = open_file_count(daemon.pid)
    process = gateway.popen(
        [sys.executable, "-c", LOAD_CLIENT, BULK_ADDRESS, BULK_HOST, str(count), str(count), "120", "/hold?ms=3000"],
        stdout=-1, stderr=-1,
    )  # fmt: skip
    peak = before
    deadline = time.monotonic() + 150
    while process.poll() is None and time.monotonic() < deadline:
        peak = max(peak, open_file_count(daemon.pid))
        time.sleep(0.05)
    stdout, stderr = process.communicate(timeout=30)
    if process.returncode != 0:
        raise RuntimeError(f"held-connections client failed: {stderr.strip()[-2000:]}")
    data = json.loads(stdout)
    context.log(f"{count} held connections: {json.dumps(data)}, daemon fds {before} -> peak {peak}")
    result.samples["held"] = {**data, "daemon_fds_before": before, "daemon_fds_peak": peak}
    result.add(Row(
        name=f"{count} connections held open at once, completed", unit="conn",
        baseline_name="connections opened", baseline=float(count), value=float(data["done"]),
        goal=Goal("ratio", ">=", 1.0, "all complete"),
        note=f"errors {data['errors']}; daemon descriptors {before} -> peak {peak}",
    ))  # fmt: skip


def measure_churn(
    context: BenchContext, result: PartResult, daemon: BenchDaemon, gateway: SandboxHandle, total: int
) -> None:
    context.check_budget()
    first = min(total // 10, 10_000)
    warm = run_json(gateway, LOAD_CLIENT, BULK_ADDRESS, BULK_HOST, "32", str(first), "600", "/small", timeout=700)
    rss_start = rss_mib(daemon.pid)
    checkpoints = [{"connections": first, "rss_mib": round(rss_start, 2)}]
    done = first
    step = max(1, (total - first) // 9)
    while done < total:
        context.check_budget()
        batch = min(step, total - done)
        data = run_json(gateway, LOAD_CLIENT, BULK_ADDRESS, BULK_HOST, "32", str(batch), "600", "/small", timeout=700)
        done += batch
        checkpoints.append({"connections": done, "rss_mib": round(rss_mib(daemon.pid), 2), "errors": data["errors"]})
        context.log(f"churn: {checkpoints[-1]}")
    rss_end = rss_mib(daemon.pid)
    result.samples["churn"] = {"warm_up": warm, "checkpoints": checkpoints}
    result.add(Row(
        name=f"daemon RSS after {total:,} short connections", unit="MiB",
        baseline_name=f"RSS after the first {first:,}", baseline=rss_start, value=rss_end,
        higher_is_better=False, goal=Goal("ratio", "<=", 1.10, "flat (<= 1.10)"),
        note="all through the gateway (strict mode); checkpoints in samples.churn",
    ))  # fmt: skip


def run(context: BenchContext) -> PartResult:
    result = PartResult(context.part)
    sizes = SMOKE if context.smoke else FULL
    with Lab() as lab:
        start_bulk_server(lab, context.work_dir, sizes["download_bytes"])
        lab.dns.set_records(BULK_HOST, "A", [BULK_ADDRESS], 300)
        lab.add_host(TLS_HOST, v4=[TLS_ADDRESS], ttl=300)
        daemon = BenchDaemon(lab, context.work_dir)
        daemon.start()
        try:
            direct = sandbox_with(daemon, "first")
            gateway = sandbox_with(daemon, "all")
            measure_downloads(context, result, direct, gateway, lab.ca_cert_path, sizes)
            measure_ttfb(context, result, direct, gateway, sizes["ttfb_requests"])
            measure_connection_rate(context, result, direct, gateway, sizes["rate_seconds"])
            measure_held(context, result, daemon, gateway, sizes["held"])
            measure_churn(context, result, daemon, gateway, sizes["churn"])
        finally:
            daemon.close()
    result.notes.append(
        "direct: default mode, the host's address in the kernel set; gateway: strict mode"
        " (inspect all), so every connection is read, checked, connected and spliced by runtad"
    )
    return result


def main() -> int:
    smoke = "--smoke" in sys.argv[1:]
    with tempfile.TemporaryDirectory(prefix="runta-bench-") as work:
        budget = SMOKE_BUDGET_SECONDS if smoke else BUDGET_SECONDS
        context = BenchContext("gateway", smoke, Path(work), budget)
        result = run(context)
        result.seconds = time.monotonic() - context.started
    print(json.dumps(result.to_json(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
