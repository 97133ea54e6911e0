"""Audit ingestion: kernel log events into SQLite, and audit queries over a large table.

Two measurements, each against a baseline taken in the same run:

- ingest: a sandbox with an empty allowlist sends UDP packets, each to a new port, at
  rising rates. Every packet is a denied new flow, so the kernel logs it to NFLOG and
  runtad stores one event. The log rate limit is raised above the highest rate tried,
  and folding is off (audit_fold_seconds = 0) so that the time until the last event
  is stored is the ingest time. The figure is the highest rate at which every packet
  that reached the log rule became a stored event, with no events_lost, events_dropped
  or events_suppressed report, and the events per second stored at that rate. A step
  counts only if the senders reached 90 % of its rate. Each step also records runtad's
  CPU time per stored event, for the event loop and for the other threads (the writer),
  which varies less than the rates when other programs share the machine. One more step
  at PROFILE_RATE runs under py-spy, and its findings are the part's profile.
- cost per event, in this process: decoding one NFLOG record (with struct, and with
  pyroute2's generic decoder for comparison), turning it into
  an event (record_event), and storing it (the writer thread, with log lines). This
  shows where the ingest time goes.
- queries: runtad is stopped, 1,000,000 events are inserted straight into its audit.db,
  and runtad is started again. The figure is the p99 latency of GET /v1/audits?limit=20
  through the API; the baseline is the same page read from SQLite in this process.

Run it alone with ``python -m bench.audit_ingest`` (JSON on stdout), or as a part of
``python -m bench audit_ingest``.
"""

from __future__ import annotations

import ipaddress
import json
import math
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple

import structlog

from bench import profiler
from bench.context import BenchContext
from bench.daemon import BenchDaemon
from bench.procfs import CLOCK_TICKS
from bench.results import PartResult, Row
from bench.stats import percentile
from runtad.audit.collector import POLL_SECONDS, record_event
from runtad.audit.model import Action, EgressEvent, Reason, Source
from runtad.audit.queries import PageRequest, fetch_page
from runtad.audit.recorder import Recorder
from runtad.audit.store import AuditDatabase
from runtad.audit.writer import AuditWriter, WriterSettings
from runtad.nflog import (
    NFULNL_PACKET_TYPE,
    LogRecord,
    decode_datagram,
    decode_datagram_pyroute2,
    nfulnl_packet_msg,
)
from tests.e2e.runtad_process import SandboxHandle
from tests.lab.topology import Lab

TOOLS: tuple[str, ...] = ()
BUDGET_SECONDS = 600.0
SMOKE_BUDGET_SECONDS = 90.0

RATES = (5_000, 20_000, 40_000, 50_000, 60_000, 80_000)
SMOKE_RATES = (1_000, 2_000)
STEP_SECONDS = 4.0
SMOKE_STEP_SECONDS = 1.0
# Well above every rate tried, so the kernel's limit never suppresses a log event.
LOG_RATE = 1_000_000
DRAIN_TIMEOUT = 30.0
STORED_ROWS = 1_000_000
SMOKE_STORED_ROWS = 20_000
INSERT_CHUNK = 50_000
QUERY_RUNTIMES = 100
QUERIES = 1000
SMOKE_QUERIES = 100
COST_EVENTS = 50_000
SMOKE_COST_EVENTS = 5_000
# Records per NFLOG datagram in the decode measurement, about what a 16 KB batch holds.
RECORDS_PER_DATAGRAM = 60

# One sender process reached about 30,000 packets/s on a 2-CPU KVM guest while runtad
# ingested. Each packet costs a sendto() call and the kernel's log and reject work, so
# higher rates are split over processes of this many packets per second each.
RATE_PER_SENDER = 25_000
MAX_SENDERS = 4
# A step whose packets were sent at less than this share of the offered rate does not
# count for the headline figure, because the machine, not runtad, set the rate.
RATE_REACHED = 0.9
# After the rate steps, one more step at this rate runs under py-spy (when installed), and
# the findings show where runtad's time goes in the event loop and the writer thread.
PROFILE_RATE = 40_000

# argv: first index, packet count, seconds. Destinations are computed before the clock
# starts, and each sender sends its share of every 1/400 of the step, then sleeps. It
# prints the seconds taken and, as JSON, the sendto() errors by errno name, except EPERM.
# A packet that an output chain drops or rejects makes sendto() fail with EPERM, so such
# a packet reached the log rule. Any other error (ENOBUFS, for example) means that the
# packet was not sent, and the step does not expect an event for it.
SENDER = """
import errno, json, socket, sys, time
first, total, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
# A new (address, port) for every packet: no two events fold together.
targets = [
    (f"198.51.100.{1 + index // 60000 % 250}", 1024 + index % 60000)
    for index in range(first, first + total)
]
batch = max(1, total // 400)
send = socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto
unsent = {}
started = time.monotonic()
for start in range(0, total, batch):
    for target in targets[start : start + batch]:
        try:
            send(b"x", target)
        except OSError as error:
            if error.errno != errno.EPERM:
                name = errno.errorcode.get(error.errno, str(error.errno))
                unsent[name] = unsent.get(name, 0) + 1
    pause = started + seconds * (start + batch) / total - time.monotonic()
    if pause > 0:
        time.sleep(pause)
print(json.dumps({"seconds": time.monotonic() - started, "unsent": unsent}))
"""

# Events by reason, each folded row counted with its repeats.
COUNT_EVENTS_BY_REASON = (
    "SELECT json_extract(payload, '$.reason'), total(json_extract(payload, '$.count'))"
    " FROM audits WHERE runtime = ? GROUP BY 1"
)
# The collector reports losses at its next poll, or at the one after when records arrived
# during the first. A step with missing events waits this long for the report.
LOSS_REPORT_WAIT = 2 * POLL_SECONDS + 2.0


def stored_counts(database: Path, runtime: str) -> Counter[str]:
    """Return the events stored for runtime by reason, folded repeats included."""
    with sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True) as connection:
        rows = connection.execute(COUNT_EVENTS_BY_REASON, (runtime,)).fetchall()
    return Counter({str(reason): int(count) for reason, count in rows})


def thread_cpu_seconds(pid: int) -> tuple[float, float]:
    """Return the CPU seconds of pid's main thread (the event loop) and of its other threads."""
    main = others = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except FileNotFoundError:  # the thread ended
            continue
        # The command name (field 2) may contain spaces, so count fields after its ')'.
        fields = stat.rsplit(")", 1)[1].split()
        seconds = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        if task.name == str(pid):
            main += seconds
        else:
            others += seconds
    return main, others


def enforced_sandbox(daemon: BenchDaemon) -> SandboxHandle:
    sandbox = daemon.create_sandbox()
    assert sandbox.post("enable").status_code == 200
    return sandbox


class SendResult(NamedTuple):
    seconds: float  # of the slowest sender
    unsent: dict[str, int]  # sendto() errors other than EPERM, by errno name


def send_packets(sandbox: SandboxHandle, total: int, seconds: float, senders: int) -> SendResult:
    """Send `total` packets from the sandbox in parallel processes."""
    shares = [total // senders + (1 if index < total % senders else 0) for index in range(senders)]
    firsts = [sum(shares[:index]) for index in range(senders)]
    processes = [
        sandbox.popen([sys.executable, "-c", SENDER, str(first), str(share), str(seconds)],
                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        for first, share in zip(firsts, shares)
    ]
    elapsed = []
    unsent: Counter[str] = Counter()
    try:
        for process in processes:
            output, _ = process.communicate(timeout=seconds * 4 + 30)
            report: dict[str, Any] = json.loads(output) if output.strip() else {}
            elapsed.append(float(report.get("seconds", math.nan)))
            unsent.update(report.get("unsent", {}))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return SendResult(max(elapsed), dict(unsent))


def cpu_per_event(seconds: float, events: int) -> float | None:
    return round(seconds / events * 1e6, 1) if events else None


ACCOUNTING_REASONS = (Reason.EVENTS_LOST, Reason.EVENTS_DROPPED, Reason.EVENTS_SUPPRESSED)


def run_ingest_step(
    context: BenchContext, daemon: BenchDaemon, rate: int, seconds: float
) -> dict[str, Any]:
    """Send rate × seconds denied packets from a new sandbox; wait until all are stored."""
    sandbox = enforced_sandbox(daemon)
    total = int(rate * seconds)
    database = daemon.state_dir / "audit.db"
    started = time.monotonic()
    senders = min(MAX_SENDERS, -(-rate // RATE_PER_SENDER))
    cpu_before = thread_cpu_seconds(daemon.pid)
    sent = send_packets(sandbox, total, seconds, senders)
    logged = total - sum(sent.unsent.values())  # packets that reached the log rule

    # Wait until every logged packet is stored or reported as lost, dropped or suppressed,
    # or until the stored count stopped growing for LOSS_REPORT_WAIT.
    counts: Counter[str] = Counter()
    last_change, last_stored = time.monotonic(), -1
    deadline = started + DRAIN_TIMEOUT + LOSS_REPORT_WAIT + seconds
    cpu_after = thread_cpu_seconds(daemon.pid)
    while time.monotonic() < deadline:
        time.sleep(0.05)
        counts = stored_counts(database, sandbox.name)
        stored = counts[Reason.DIRECT_IP_NOT_ALLOWED]
        if stored != last_stored:
            last_stored, last_change = stored, time.monotonic()
            cpu_after = thread_cpu_seconds(daemon.pid)
        reported = sum(counts[reason] for reason in ACCOUNTING_REASONS)
        if stored + reported >= logged or time.monotonic() - last_change >= LOSS_REPORT_WAIT:
            break
    ingest_seconds = last_change - started
    stored = counts[Reason.DIRECT_IP_NOT_ALLOWED]
    lost = counts[Reason.EVENTS_LOST]
    dropped = counts[Reason.EVENTS_DROPPED]
    suppressed = counts[Reason.EVENTS_SUPPRESSED]
    sent_per_second = round(logged / sent.seconds) if sent.seconds > 0 else None
    step = {
        "offered_per_second": rate,
        "packets": total,
        "senders": senders,
        "send_seconds": round(sent.seconds, 3),
        "sent_per_second": sent_per_second,
        "unsent": sent.unsent,
        "logged": logged,
        "stored": stored,
        "missing": logged - stored,
        # Logged packets neither stored nor reported: nonzero means a silent loss.
        "unaccounted": logged - stored - lost - dropped - suppressed,
        "reported_lost": lost,
        "reported_dropped": dropped,
        "reported_suppressed": suppressed,
        "ingest_seconds": round(ingest_seconds, 3),
        "stored_per_second": round(stored / ingest_seconds) if ingest_seconds > 0 else None,
        # CPU time of runtad per stored event: the event loop (NFLOG reading, decoding,
        # building events) and the other threads (almost all the audit writer).
        "event_loop_cpu_us": cpu_per_event(cpu_after[0] - cpu_before[0], stored),
        "other_threads_cpu_us": cpu_per_event(cpu_after[1] - cpu_before[1], stored),
        # A step counts only when the generator came close to the offered rate.
        "rate_reached": sent_per_second is not None and sent_per_second >= rate * RATE_REACHED,
        "none_lost": logged == stored and lost == 0 and dropped == 0 and suppressed == 0,
    }
    context.log(f"ingest at {rate}/s: {json.dumps(step)}")
    return step


def profile_ingest(
    context: BenchContext, daemon: BenchDaemon, rate: int, seconds: float
) -> list[dict[str, Any]]:
    """Run one more ingest step under py-spy and return its findings (empty without py-spy)."""
    if profiler.py_spy_path() is None:
        context.log("py-spy is not installed, so the ingest step is not profiled")
        return []
    recording = profiler.Recording(
        daemon.pid, context.work_dir / "ingest-profile.txt", max_seconds=seconds + DRAIN_TIMEOUT
    )
    step = run_ingest_step(context, daemon, rate, seconds)
    try:
        findings = profiler.summarize(recording.stop(), recording.seconds)
    except profiler.ProfileFailedError as error:
        context.log(f"profiling the ingest step failed: {error}")
        return []
    return [{**finding, "step": f"{rate}/s, none lost: {step['none_lost']}"} for finding in findings]


def insert_stored_events(database: Path, rows: int, runtimes: list[str]) -> float:
    """Insert rows events straight into audit.db, spread over runtimes; return the seconds."""
    started = time.monotonic()
    store = AuditDatabase(database)
    now = time.time() - rows / 1000
    try:
        for first in range(0, rows, INSERT_CHUNK):
            events = [
                EgressEvent(
                    time=now + index / 1000, runtime=runtimes[index % len(runtimes)],
                    action=Action.DENY, reason=Reason.DIRECT_IP_NOT_ALLOWED, source=Source.KERNEL,
                    message="The connection to 198.51.100.77 port 443 over tcp was denied because"
                    " no DNS answer of the sandbox named this address.",
                    address="198.51.100.77", port=443, protocol="tcp",
                )
                for index in range(first, min(rows, first + INSERT_CHUNK))
            ]
            store.insert(events)
    finally:
        store.close()
    return time.monotonic() - started


def nflog_datagram(records: int) -> bytes:
    """Build one NFLOG datagram of denied IPv4 UDP packets, as the kernel batches them."""
    packet = (
        bytes.fromhex("45000020 00004000 40110000")
        + ipaddress.IPv4Address("10.213.0.2").packed
        + ipaddress.IPv4Address("198.51.100.77").packed
        + bytes.fromhex("9c40 0400 000c 0000")
    )
    data = b""
    for seq in range(records):
        message = nfulnl_packet_msg()
        message["header"]["type"] = NFULNL_PACKET_TYPE
        message["nfgen_family"] = socket.AF_INET
        message["res_id"] = 7
        message["attrs"] = [
            ["NFULA_PACKET_HDR", {"hw_protocol": 0x0800, "hook": 3}],
            ["NFULA_PREFIX", "runta deny "],
            ["NFULA_IFINDEX_OUTDEV", 2],
            ["NFULA_UID", 0],
            ["NFULA_GID", 0],
            ["NFULA_SEQ", seq],
            ["NFULA_PAYLOAD", packet],
        ]
        message.encode()
        data += bytes(message.data)
    return data


def measure_costs(work_dir: Path, events: int) -> dict[str, float]:
    """Return microseconds per event of each ingest stage, measured in this process."""
    datagram = nflog_datagram(RECORDS_PER_DATAGRAM)
    decoded = events // RECORDS_PER_DATAGRAM * RECORDS_PER_DATAGRAM
    started = time.perf_counter()
    for _ in range(events // RECORDS_PER_DATAGRAM):
        decode_datagram(datagram)
    decode = (time.perf_counter() - started) / decoded
    # The generic pyroute2 decoder, which runtad used before, on a tenth of the events.
    repeats = max(1, events // RECORDS_PER_DATAGRAM // 10)
    started = time.perf_counter()
    for _ in range(repeats):
        decode_datagram_pyroute2(datagram)
    decode_pyroute2 = (time.perf_counter() - started) / (repeats * RECORDS_PER_DATAGRAM)

    database = work_dir / "cost.db"
    AuditDatabase(database).close()
    settings = WriterSettings(fold_seconds=0.0, queue_max=events, log_lines=True)
    writer = AuditWriter(lambda: AuditDatabase(database), settings)
    recorder = Recorder("cost", writer.submit)
    records = [
        LogRecord("runta deny ", socket.AF_INET, "udp", "10.213.0.2", f"198.51.100.{index % 250 + 1}",
                  40000, 1024 + index % 60000, None, None, index, None)
        for index in range(events)
    ]
    started = time.perf_counter()
    for record in records:
        record_event(recorder, record, 0.0)
    emit = (time.perf_counter() - started) / events

    # The writer's log lines go to /dev/null here, as JSON, like runtad's under systemd.
    with open("/dev/null", "w") as sink:
        structlog.configure(
            processors=[structlog.processors.TimeStamper(fmt="iso", utc=True), structlog.processors.JSONRenderer()],
            logger_factory=structlog.PrintLoggerFactory(sink),
        )
        try:
            writer.start()
            started = time.perf_counter()
            writer.flush(timeout=600)
            store = (time.perf_counter() - started) / events
            writer.close()
        finally:
            structlog.reset_defaults()
    return {
        "nflog_decode_us": round(decode * 1e6, 1),
        "nflog_decode_pyroute2_us": round(decode_pyroute2 * 1e6, 1),
        "record_event_us": round(emit * 1e6, 1),
        "store_with_log_line_us": round(store * 1e6, 1),
    }


def time_api(daemon: BenchDaemon, path: str, count: int) -> list[float]:
    samples = []
    with daemon.client() as client:
        client.get(path).raise_for_status()  # connect and warm up
        for _ in range(count):
            started = time.perf_counter()
            response = client.get(path)
            samples.append(time.perf_counter() - started)
            response.raise_for_status()
    return samples


def time_direct(database: Path, request: PageRequest, count: int) -> list[float]:
    samples = []
    with sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True) as connection:
        for _ in range(count):
            started = time.perf_counter()
            fetch_page(connection, request)
            samples.append(time.perf_counter() - started)
    return samples


def milliseconds(samples: list[float], fraction: float) -> float:
    return round(percentile(samples, fraction) * 1000, 3)


def run(context: BenchContext) -> PartResult:
    result = PartResult(context.part)
    rates = SMOKE_RATES if context.smoke else RATES
    step_seconds = SMOKE_STEP_SECONDS if context.smoke else STEP_SECONDS
    rows = SMOKE_STORED_ROWS if context.smoke else STORED_ROWS
    queries = SMOKE_QUERIES if context.smoke else QUERIES

    costs = measure_costs(context.work_dir, SMOKE_COST_EVENTS if context.smoke else COST_EVENTS)
    result.samples["in_process_cost_per_event"] = costs
    context.log(f"cost per event: {json.dumps(costs)}")
    result.notes.append(
        "Each step waits for the collector's loss report, which compares the log_reached"
        " counter with the records received. 'unaccounted' is the logged packets neither"
        " stored nor reported as lost, dropped or suppressed, and should be 0."
    )

    with Lab() as lab:
        daemon = BenchDaemon(
            lab, context.work_dir, log_rate=LOG_RATE, log_burst=LOG_RATE, audit_fold_seconds=0.0
        )
        daemon.start()
        try:
            steps = []
            for rate in rates:
                context.check_budget()
                steps.append(run_ingest_step(context, daemon, rate, step_seconds))
            result.samples["ingest_steps"] = steps
            lossless = [step for step in steps if step["none_lost"] and step["rate_reached"]]
            best = max(lossless, key=lambda step: step["offered_per_second"]) if lossless else None
            result.add(Row(
                name="NFLOG to SQLite, highest rate with none lost", unit="events/s",
                baseline_name="highest rate tried", baseline=float(max(rates)),
                value=float(best["offered_per_second"]) if best else None,
                note="folding off, log lines on; see samples.ingest_steps for each rate",
            ))
            result.add(Row(
                name="events stored per second at that rate", unit="events/s",
                baseline_name="packets sent per second",
                baseline=float(best["sent_per_second"]) if best and best["sent_per_second"] else None,
                value=float(best["stored_per_second"]) if best and best["stored_per_second"] else None,
            ))
            if not context.smoke:
                context.check_budget()
                result.profile = profile_ingest(context, daemon, PROFILE_RATE, step_seconds)

            context.check_budget()
            runtime = next(iter(daemon.sandboxes))
            daemon.stop()
            database = daemon.state_dir / "audit.db"
            names = [runtime] + [f"bench{index}" for index in range(QUERY_RUNTIMES - 1)]
            insert_seconds = insert_stored_events(database, rows, names)
            context.log(f"inserted {rows} events in {insert_seconds:.1f} s")
            daemon.start()

            paths = {
                "audits": "/audits?limit=20",
                "audits_runtime": f"/audits?runtime={runtime}&category=egress&limit=20",
                "runtime_events": f"/runtimes/{runtime}/egress/events?limit=20",
                "audits_deep_cursor": f"/audits?limit=20&after={rows // 2}",
            }
            latencies = {name: time_api(daemon, path, queries) for name, path in paths.items()}
            direct = time_direct(database, PageRequest(limit=20), queries)
            result.samples["stored_rows"] = rows
            result.samples["insert_seconds"] = round(insert_seconds, 1)
            result.samples["query_ms"] = {
                name: {"p50": milliseconds(samples, 0.5), "p99": milliseconds(samples, 0.99)}
                for name, samples in {**latencies, "direct_sqlite": direct}.items()
            }
            result.add(Row(
                name=f"GET /v1/audits?limit=20 p99, {rows:,} events", unit="ms",
                baseline_name="same page from SQLite in-process, p99",
                baseline=milliseconds(direct, 0.99), value=milliseconds(latencies["audits"], 0.99),
                higher_is_better=False,
            ))
        finally:
            daemon.close()
    return result


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="runta-bench-") as work:
        smoke = "--smoke" in sys.argv[1:]
        budget = SMOKE_BUDGET_SECONDS if smoke else BUDGET_SECONDS
        context = BenchContext("audit_ingest", smoke, Path(work), budget)
        result = run(context)
        result.seconds = time.monotonic() - context.started
    print(json.dumps(result.to_json(), indent=2))
    return 0 if result.error is None and result.has_numbers() else 1


if __name__ == "__main__":
    sys.exit(main())
