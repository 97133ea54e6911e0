"""Policy apply part: from `runta egress allow` (CLI) and the API call to the kernel holding the addresses.

The upstream is dnsmasq in the lab's inet namespace, a local resolver answering from a
hosts file: the lab's own DNS server, single-threaded Python, answers some 6,000 queries
a second, so 20,000 queries alone would take it over 3 s. Every host name gets one AAAA
record (a distinct address in 2001:db8:a::/48) and no A record, so an A query gets an
empty NOERROR answer. Each allowed host then costs runtad an A and an AAAA query and one
set element. After each call returns, nft -j lists the sandbox's allow6 set to count the
addresses the kernel holds.

A second measure times `POST enable` on a sandbox whose conntrack table contains N
entries, none of them to an allowed address, against the same call on an empty table.
The entries are made over ctnetlink inside the sandbox's namespace: no packet is sent.

Baselines measured in the same run, against the same dnsmasq: the upstream round trip
(one query at a time from the daemon's namespace) and the upstream's capacity under
dnsperf load (A and AAAA queries for the benchmark's names). Also measured: the CLI's own
cost (`runta status`, interpreter start-up and one API request, run right before each
CLI call) and one durable SQLite commit with the store's settings (WAL,
synchronous=FULL) on the file system of the daemon's state.
"""

from __future__ import annotations

import ipaddress
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import dnsmasq, dnsprobe, nftsets, profiler
from bench.context import BenchContext
from bench.daemon import BenchDaemon
from bench.dnsperf import run_dnsperf
from bench.results import Goal, PartResult, Row
from bench.stats import median, paired_ratio
from runtad.ctnetlink import ConntrackSocket, FlowTuple
from runtad.netns import call_in_netns
from tests.e2e.runtad_process import SandboxHandle
from tests.lab.topology import Lab

TOOLS = ("nft", "dnsperf", "dnsmasq")
BUDGET_SECONDS = 200.0
SMOKE_BUDGET_SECONDS = 60.0

DOMAIN = "apply.bench.test"
UPSTREAM = "198.51.100.55"
# dnsmasq answers the names of its hosts file with its default cache of 150 names as
# well (the DNS proxy part relies on that). This size is what a local resolver serving
# the benchmark's 20,000 or so names would be configured with.
UPSTREAM_CACHE_SIZE = 10_000
# Queries dnsperf keeps in flight while it measures the upstream's capacity.
CAPACITY_IN_FLIGHT = 100
ADDRESS_BASE = int(ipaddress.IPv6Address("2001:db8:a::"))
TTL = 300
METHODS = ("api", "cli")
POLL_SECONDS = 0.25


@dataclass(frozen=True)
class Settings:
    sizes: tuple[tuple[int, int], ...]  # (hosts per call, calls)
    hold_wait_seconds: float  # bound on waiting for the kernel to hold every address
    baseline_trials: int
    conntrack_entries: int  # entries in the sandbox's conntrack table when enforcement is enabled
    enable_trials: int


FULL = Settings(
    sizes=((1, 20), (100, 5), (10_000, 1)), hold_wait_seconds=45.0, baseline_trials=20,
    conntrack_entries=5_000, enable_trials=3,
)  # fmt: skip
SMOKE = Settings(
    sizes=((1, 3), (100, 1)), hold_wait_seconds=10.0, baseline_trials=3, conntrack_entries=200, enable_trials=1
)
# Entries made for the enable measure: UDP flows from a sandbox pool address to
# documentation addresses, with a timeout longer than the measure.
CONNTRACK_SOURCE = "10.213.255.2"
CONNTRACK_TIMEOUT_SECONDS = 600
ENABLE_NEEDED_SECONDS = 20.0


class ApplyCallError(Exception):
    """An allow call through the CLI or the API did not succeed."""

    def __init__(self, method: str, hosts: int, detail: str) -> None:
        super().__init__(f"allowing {hosts} hosts through the {method} failed: {detail.strip()[-600:]}")
        self.method = method
        self.hosts = hosts


class HostNames:
    """Fresh host names with their AAAA addresses, handed out in order."""

    def __init__(self, total: int) -> None:
        self.records = [(f"h{index}.{DOMAIN}", str(ipaddress.IPv6Address(ADDRESS_BASE + index + 1))) for index in range(total)]
        self._next = 0

    def take(self, count: int) -> list[tuple[str, str]]:
        taken = self.records[self._next : self._next + count]
        self._next += count
        return taken


def run(context: BenchContext) -> PartResult:
    settings = SMOKE if context.smoke else FULL
    result = PartResult(context.part)
    probe_count = settings.baseline_trials + 1
    names = HostNames(probe_count + sum(size * calls for size, calls in settings.sizes) * len(METHODS))
    with Lab() as lab:
        context.log(f"starting dnsmasq with {len(names.records):,} AAAA records as the upstream")
        start_upstream(lab, context.work_dir, names.records)
        probes = names.take(probe_count)
        dnsprobe.wait_answering(lab.host_netns, UPSTREAM, probes[0][0], timeout=30)
        rtts = dnsprobe.query_times(lab.host_netns, UPSTREAM, [name for name, _ in probes[1:]], "AAAA")
        upstream_qps = measure_upstream_capacity(lab, context, [name for name, _ in names.records])
        store_ms = measure_store_write(context, settings.baseline_trials)
        daemon = BenchDaemon(lab, context.work_dir / "runtad", upstream_dns=[UPSTREAM])
        daemon.start()
        try:
            calls = run_calls(context, settings, daemon, names)
            enables = measure_enable(context, settings, daemon)
        finally:
            daemon.close()
    result.samples.update({
        "upstream_rtt_ms": [1000 * value for value in rtts],
        "upstream_qps": upstream_qps,
        "store_write_ms": store_ms,
        "calls": calls,
        "enables": enables,
    })  # fmt: skip
    add_rows(result, settings)
    add_enable_rows(result, settings)
    return result


def conntrack_flows(count: int) -> list[FlowTuple]:
    """Return count distinct UDP flows to addresses in 198.51.100.0/24 and 203.0.113.0/24."""
    networks = ("198.51.100", "203.0.113")
    flows = []
    for index in range(count):
        host, port = divmod(index, 250)
        destination = f"{networks[host % 2]}.{port + 1}"
        flows.append(FlowTuple(CONNTRACK_SOURCE, destination, 17, 10_000 + host, 53))
    return flows


def fill_conntrack(netns_path: str, flows: list[FlowTuple]) -> int:
    def work() -> int:
        with ConntrackSocket() as conntrack:
            return conntrack.create(flows, CONNTRACK_TIMEOUT_SECONDS)

    return call_in_netns(Path(netns_path), work)


def count_conntrack(netns_path: str) -> int:
    def work() -> int:
        with ConntrackSocket() as conntrack:
            return len(conntrack.dump())

    return call_in_netns(Path(netns_path), work)


def measure_enable(context: BenchContext, settings: Settings, daemon: BenchDaemon) -> list[dict[str, Any]]:
    """Time POST enable with settings.conntrack_entries entries in the table and with none, in pairs."""
    if context.remaining() < ENABLE_NEEDED_SECONDS:
        context.log(f"skipping enable with conntrack entries: {context.remaining():.0f} s of budget left")
        return []
    flows = conntrack_flows(settings.conntrack_entries)
    sandbox = daemon.create_sandbox()
    records = []
    for _ in range(settings.enable_trials):
        for entries in (0, len(flows)):
            sandbox.post("disable").raise_for_status()
            created = fill_conntrack(sandbox.netns_path, flows[:entries])
            before = count_conntrack(sandbox.netns_path)
            started = time.perf_counter()
            response = sandbox.post("enable")
            elapsed = time.perf_counter() - started
            if response.status_code != 200:
                raise ApplyCallError("API", 0, f"enable: {response.text}")
            after = count_conntrack(sandbox.netns_path)
            records.append({"entries": created, "before": before, "after": after, "seconds": elapsed})
    full = [record["seconds"] for record in records if record["entries"]]
    context.log(f"enable with {len(flows):,} conntrack entries: {1000 * median(full):.1f} ms")
    return records


def start_upstream(lab: Lab, work_dir: Path, records: list[tuple[str, str]]) -> None:
    """Start dnsmasq in the inet namespace, answering each name's AAAA record with TTL."""
    lab.add_server_address(UPSTREAM)
    hosts_file = dnsmasq.write_hosts_file(work_dir / "upstream.hosts", [(address, name) for name, address in records])
    argv = dnsmasq.upstream_argv(UPSTREAM, hosts_file, DOMAIN, TTL) + [f"--cache-size={UPSTREAM_CACHE_SIZE}"]
    lab.spawn(lab.inet_netns, argv, log_path=work_dir / "upstream.log")


def measure_upstream_capacity(lab: Lab, context: BenchContext, names: list[str]) -> float:
    """Measure the upstream's q/s under dnsperf load of A and AAAA queries, as runtad sends them."""
    query_file = context.work_dir / "upstream-queries.txt"
    query_file.write_text("".join(f"{name} A\n{name} AAAA\n" for name in names))
    seconds = 1 if context.smoke else 3
    return run_dnsperf(lab.host_netns, UPSTREAM, query_file, seconds, in_flight=CAPACITY_IN_FLIGHT).qps


def measure_store_write(context: BenchContext, trials: int) -> list[float]:
    """Time one durable SQLite commit as runtad's store makes it (WAL, synchronous=FULL), in ms.

    The database sits next to the daemon's state, on the same file system. Each write
    updates one row in a transaction, as a policy write does.
    """
    path = context.work_dir / "store-baseline.db"
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("CREATE TABLE policies (id INTEGER PRIMARY KEY, hosts TEXT, version INTEGER)")
        connection.execute("INSERT INTO policies VALUES (1, '[]', 1)")
        times = []
        for version in range(2, trials + 2):
            started = time.perf_counter()
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("UPDATE policies SET hosts = ?, version = ? WHERE id = 1", (json.dumps([f"h{version}.{DOMAIN}"]), version))
            connection.execute("COMMIT")
            times.append(1000 * (time.perf_counter() - started))
        return times
    finally:
        connection.close()


def timed_cli(daemon: BenchDaemon, *args: str) -> float:
    started = time.perf_counter()
    completed = daemon.cli(*args)
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        raise ApplyCallError("CLI", 0, f"runta {' '.join(args)}: {completed.stderr}")
    return elapsed


def run_calls(context: BenchContext, settings: Settings, daemon: BenchDaemon, names: HostNames) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    largest = max(size for size, _ in settings.sizes)
    with daemon.client() as client:
        for size, count in settings.sizes:
            for method in METHODS:
                # A call of many hosts may wait the whole bound for the kernel to hold them.
                needed = settings.hold_wait_seconds + 15 if size >= 1000 else 10
                if context.remaining() < needed:
                    context.log(f"skipping {method} {size} hosts: {context.remaining():.0f} s of budget left")
                    continue
                sandbox = daemon.create_sandbox()
                sandbox.post("enable").raise_for_status()
                for _ in range(count):
                    batch = names.take(size)
                    profile_it = method == "api" and size == largest
                    record = allow_and_check(context, daemon, client, sandbox, method, batch, settings, profile_it)
                    calls.append(record)
                context.log(f"{method} {size} hosts: {median([c['seconds'] for c in calls if c['method'] == method and c['hosts'] == size]) * 1000:.1f} ms")
    return calls


def allow_and_check(
    context: BenchContext, daemon: BenchDaemon, client: httpx.Client, sandbox: SandboxHandle, method: str,
    batch: list[tuple[str, str]], settings: Settings, profile_it: bool,
) -> dict[str, Any]:
    """Allow batch's hosts, time the call, then count the addresses the kernel holds."""
    hosts = [name for name, _ in batch]
    expected = {address for _, address in batch}
    recording = None
    if profile_it and profiler.py_spy_path() is not None:
        recording = profiler.Recording(daemon.pid, context.work_dir / f"apply-{len(hosts)}.txt", max_seconds=120)
        time.sleep(0.5)  # py-spy attaches before the call starts
    record: dict[str, Any] = {"method": method, "hosts": len(hosts)}
    if method == "cli":
        # The CLI's own cost, measured right before the call it is compared with.
        record["cli_status_seconds"] = timed_cli(daemon, "status")
    started = time.perf_counter()
    if method == "api":
        response = client.post(f"/runtimes/{sandbox.name}/egress/allow", json={"hosts": hosts})
        if response.status_code != 200:
            raise ApplyCallError(method, len(hosts), response.text)
    else:
        completed = daemon.cli("egress", "allow", sandbox.name, *hosts, timeout=300)
        if completed.returncode != 0:
            raise ApplyCallError(method, len(hosts), completed.stderr)
    elapsed = time.perf_counter() - started
    held = len(expected & nftsets.set_elements(sandbox.netns, "runta", "allow6"))
    record.update({"seconds": elapsed, "held_at_return": held})
    if held < len(expected):
        record["seconds_until_all_held"] = wait_all_held(sandbox, expected, started, settings.hold_wait_seconds)
    if recording is not None:
        profile_path = recording.stop()
        record["profile"] = profiler.summarize(profile_path, recording.seconds)
    return record


def wait_all_held(sandbox: SandboxHandle, expected: set[str], started: float, bound: float) -> float | None:
    """Poll the set until it contains every expected address, and return the seconds since started.

    Returns None when bound seconds pass first.
    """
    while time.perf_counter() - started < bound:
        if expected <= nftsets.set_elements(sandbox.netns, "runta", "allow6"):
            return time.perf_counter() - started
        time.sleep(POLL_SECONDS)
    return None


def add_rows(result: PartResult, settings: Settings) -> None:
    samples = result.samples
    rtt_ms = median(samples["upstream_rtt_ms"])
    calls = samples["calls"]
    for size, _ in settings.sizes:
        for method in METHODS:
            runs = [call for call in calls if call["method"] == method and call["hosts"] == size]
            if not runs:
                result.notes.append(f"allow {size:,} hosts through the {method.upper()} did not run: the time budget ran out.")
                continue
            seconds = [call["seconds"] for call in runs]
            value_ms = 1000 * median(seconds)
            label = f"allow {size:,} host{'s' if size > 1 else ''}, {method.upper()}, call returned"
            pairs = None
            differences = None
            if method == "api":
                baseline_name, baseline = "upstream round trip", rtt_ms
            else:
                status = [call["cli_status_seconds"] for call in runs]
                baseline_name, baseline = "runta status just before (CLI start-up + 1 request)", 1000 * median(status)
                pairs = paired_ratio(seconds, status)
                differences = 1000 * median([call - before for call, before in zip(seconds, status)])
            goal = None
            if size == 1 and method == "api":
                goal = Goal("difference", "<=", 5.0, "≤ 5 ms + upstream round trip")
            elif size == 1:
                goal = Goal("difference", "<=", 5.0 + rtt_ms, "≤ runta status + 5 ms + upstream round trip")
            elif size >= 10_000:
                goal = Goal("value", "<=", 1000.0, "≤ 1 s")
            held = min(call["held_at_return"] for call in runs)
            row = result.add(Row(
                label, "ms", baseline_name, baseline, value_ms, higher_is_better=False, goal=goal,
                paired_ratio=pairs, paired_difference=differences,
            ))  # fmt: skip
            row.note = f"kernel held {held:,} of {size:,} addresses when the call returned (fewest over {len(runs)} calls)"
            if size >= 10_000:
                add_all_held_row(result, runs, size, method, samples["upstream_qps"])
    result.notes.append(
        f"One durable SQLite commit of one row (WAL, synchronous=FULL, same file system as the daemon's state):"
        f" {median(samples['store_write_ms']):.2f} ms (median of {len(samples['store_write_ms'])})."
    )
    result.notes.append(
        f"Upstream: dnsmasq answering from a hosts file, {samples['upstream_qps']:,.0f} q/s under dnsperf load;"
        f" one query at a time takes {rtt_ms:.2f} ms (median of {len(samples['upstream_rtt_ms'])})."
    )
    for call in calls:
        if "profile" in call:
            result.profile = call.pop("profile")
            result.notes.append(f"Profile: runtad during the {call['hosts']:,}-host API call.")


def add_all_held_row(result: PartResult, runs: list[dict[str, Any]], size: int, method: str, upstream_qps: float) -> None:
    """Add the time until the kernel held all addresses, against the upstream's time for the queries alone."""
    waits = [call.get("seconds_until_all_held", call["seconds"]) for call in runs]
    value_ms = None if any(wait is None for wait in waits) else 1000 * median(waits)
    queries = 2 * size  # an A and an AAAA query per host
    result.add(Row(
        f"allow {size:,} hosts, {method.upper()}, until the kernel held all", "ms",
        f"{queries:,} queries at the upstream's q/s", 1000 * queries / upstream_qps, value_ms,
        higher_is_better=False, goal=Goal("value", "<=", 1000.0, "≤ 1 s"),
    ))  # fmt: skip


def add_enable_rows(result: PartResult, settings: Settings) -> None:
    records = result.samples["enables"]
    if not records:
        result.notes.append("enable with conntrack entries did not run: the time budget ran out.")
        return
    empty = [record["seconds"] for record in records if not record["entries"]]
    full = [record for record in records if record["entries"]]
    seconds = [record["seconds"] for record in full]
    row = result.add(Row(
        f"enable, {settings.conntrack_entries:,} conntrack entries to denied addresses", "ms",
        "enable, empty conntrack table", 1000 * median(empty), 1000 * median(seconds), higher_is_better=False,
        paired_ratio=paired_ratio(seconds, empty),
    ))  # fmt: skip
    left = max(record["after"] for record in full)
    created = min(record["entries"] for record in full)
    row.note = f"entries created {created:,} per trial; most left after enable {left:,} (over {len(full)} trials)"
