"""DNS proxy part: queries per second and latency through a sandbox's proxy, against baselines.

Topology, all inside the lab and one namespace of this part's own::

    sandbox ──redirect──► runtad proxy ─┐
    lab host namespace ─────────────────┼──► upstream dnsmasq (198.51.100.54, inet namespace)
    peer namespace: dnsmasq forwarder ──┘        answers NAMES names under w.bench.test, TTL 300
        (--cache-size=0, --nftset)

The three load runs send the same distinct names under the sandbox's allowed wildcard
to: the upstream directly (from the lab's host namespace, where runtad's own upstream
queries leave from); runtad's proxy (from the sandbox, to the upstream's address, which
the sandbox's nat rule redirects to the proxy); and dnsmasq forwarding with --nftset.
runtad and the peer dnsmasq run pinned to one CPU, the load and the upstream to the
others, so a figure of the server under test is a figure of one core.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import dnsmasq, dnsprobe, nftcost, nftsets, profiler
from bench.context import BenchContext
from bench.daemon import BenchDaemon
from bench.dnsperf import DnsperfResult, run_dnsperf, write_query_file
from bench.namespaces import bench_netns, link_netns
from bench.procfs import cpu_seconds, pin_process, split_cpus, taskset_argv
from bench.results import Goal, PartResult, Row
from bench.stats import median, paired_ratio, percentile
from tests.lab.netns import IP, netns_argv, run_checked
from tests.lab.processes import client_env
from tests.lab.topology import Lab

TOOLS = ("dnsperf", "dnsmasq", "taskset", "nft")
BUDGET_SECONDS = 150.0
SMOKE_BUDGET_SECONDS = 90.0

UPSTREAM = "198.51.100.54"
DOMAIN = "w.bench.test"
TTL = 300
PEER_LINK_INET = "198.51.100.249/30"
PEER_LINK_PEER = "198.51.100.250/30"
PEER_GATEWAY = "198.51.100.249"
PEER_TABLE = "bench"
PEER_SET = "allow4"
# Distinct addresses the names share, as CDN names do: 192.0.2.0/24 and 198.51.100.0/24.
ADDRESS_POOL = [f"192.0.2.{i}" for i in range(256)] + [f"198.51.100.{i}" for i in range(256)]


@dataclass(frozen=True)
class Settings:
    names: int
    rounds: int
    throughput_seconds: int
    latency_seconds: int
    latency_rate: int  # queries per second offered in the latency runs
    in_flight: int
    profile_seconds: int
    nft_elements: int  # elements per case of the set-update cost measurement


FULL = Settings(
    names=4000, rounds=3, throughput_seconds=6, latency_seconds=4, latency_rate=1000, in_flight=100,
    profile_seconds=10, nft_elements=2048,
)  # fmt: skip
SMOKE = Settings(
    names=200, rounds=1, throughput_seconds=1, latency_seconds=1, latency_rate=200, in_flight=20,
    profile_seconds=2, nft_elements=128,
)  # fmt: skip


@dataclass
class Target:
    """The namespace and server of one load run, and the pid whose CPU time it costs (None: not measured)."""

    name: str
    netns: str
    server: str
    pid: int | None


def run(context: BenchContext) -> PartResult:
    settings = SMOKE if context.smoke else FULL
    result = PartResult(context.part)
    server_cpus, load_cpus = split_cpus()
    result.samples["cpus"] = {"server": sorted(server_cpus), "load": sorted(load_cpus)}
    names = [f"n{i}.{DOMAIN}" for i in range(settings.names)]
    query_file = write_query_file(context.work_dir / "queries.txt", names)

    with bench_netns("peer") as peer_netns, Lab() as lab:
        context.log("starting the upstream, the dnsmasq peer and runtad")
        start_upstream(lab, context.work_dir, names, load_cpus)
        peer_pid = start_peer(lab, peer_netns, context.work_dir, server_cpus)
        daemon = BenchDaemon(lab, context.work_dir / "runtad", upstream_dns=[UPSTREAM])
        daemon.start()
        try:
            pin_process(daemon.pid, server_cpus)
            sandbox = daemon.create_sandbox()
            for action, hosts in (("allow", [f"*.{DOMAIN}"]), ("enable", None)):
                response = sandbox.post(action, hosts)
                response.raise_for_status()
            targets = [
                Target("direct", lab.host_netns, UPSTREAM, None),
                Target("runtad", sandbox.netns, UPSTREAM, daemon.pid),
                Target("dnsmasq", peer_netns, "127.0.0.1", peer_pid),
            ]
            measure(context, settings, targets, query_file, load_cpus, result)
            profile(context, settings, targets[1], query_file, load_cpus, result)
            result.samples["set_elements"] = {
                "runtad": len(nftsets.set_elements(sandbox.netns, "runta", "allow4")),
                "dnsmasq": len(nftsets.set_elements(peer_netns, PEER_TABLE, PEER_SET)),
            }
        finally:
            daemon.close()
    result.samples["nft_set_updates"] = nftcost.measure_set_updates(settings.nft_elements)
    add_rows(result, settings)
    return result


def start_upstream(lab: Lab, work_dir: Path, names: list[str], cpus: set[int]) -> None:
    lab.add_server_address(UPSTREAM)
    records = [(ADDRESS_POOL[index % len(ADDRESS_POOL)], name) for index, name in enumerate(names)]
    hosts_file = dnsmasq.write_hosts_file(work_dir / "upstream.hosts", records)
    argv = taskset_argv(cpus) + dnsmasq.upstream_argv(UPSTREAM, hosts_file, DOMAIN.split(".", 1)[1], TTL)
    lab.spawn(lab.inet_netns, argv, log_path=work_dir / "upstream.log")
    dnsprobe.wait_answering(lab.host_netns, UPSTREAM, names[0])


def start_peer(lab: Lab, peer_netns: str, work_dir: Path, cpus: set[int]) -> int:
    """Link the peer namespace to the inet namespace and start dnsmasq there; return its pid."""
    link_netns(lab.inet_netns, "rtbpeer", PEER_LINK_INET, peer_netns, "eth0", PEER_LINK_PEER)
    run_checked([IP, "-n", peer_netns, "route", "add", f"{UPSTREAM}/32", "via", PEER_GATEWAY])
    ruleset = work_dir / "peer.nft"
    ruleset.write_text(
        f"table inet {PEER_TABLE} {{\n  set {PEER_SET} {{ type ipv4_addr; flags timeout; timeout {TTL}s; }}\n}}\n"
    )
    nftsets.run_nft(peer_netns, ["-f", str(ruleset)])
    argv = taskset_argv(cpus) + dnsmasq.peer_argv("127.0.0.1", UPSTREAM, DOMAIN, f"4#inet#{PEER_TABLE}#{PEER_SET}")
    process = lab.spawn(peer_netns, argv, log_path=work_dir / "peer.log")
    dnsprobe.wait_answering(peer_netns, "127.0.0.1", f"n0.{DOMAIN}")
    return process.pid


def measure(
    context: BenchContext, settings: Settings, targets: list[Target], query_file: Path,
    load_cpus: set[int], result: PartResult,
) -> None:
    """Run throughput and fixed-rate latency loads against each target, rounds interleaved."""
    for target in targets:  # warm-up: neighbour tables, first set elements
        run_dnsperf(target.netns, target.server, query_file, 1, in_flight=10, cpus=load_cpus)
    throughput: dict[str, list[dict[str, Any]]] = {target.name: [] for target in targets}
    latencies: dict[str, list[float]] = {target.name: [] for target in targets}
    round_seconds = len(targets) * (settings.throughput_seconds + settings.latency_seconds + 2)
    for round_index in range(settings.rounds):
        if round_index > 0 and context.remaining() < round_seconds + settings.profile_seconds + 10:
            result.notes.append(f"Only {round_index} of {settings.rounds} rounds ran, to stay within the time budget.")
            break
        for target in targets:
            cpu_before = cpu_seconds(target.pid) if target.pid else 0.0
            load = run_dnsperf(
                target.netns, target.server, query_file, settings.throughput_seconds,
                in_flight=settings.in_flight, cpus=load_cpus,
            )
            cpu_used = cpu_seconds(target.pid) - cpu_before if target.pid else None
            throughput[target.name].append(_throughput_record(load, cpu_used))
            context.log(f"round {round_index + 1} {target.name}: {load.qps:,.0f} q/s, lost {load.lost}")
        for target in targets:
            load = run_dnsperf(
                target.netns, target.server, query_file, settings.latency_seconds,
                in_flight=settings.in_flight, max_qps=settings.latency_rate, per_query=True, cpus=load_cpus,
            )
            latencies[target.name].extend(load.latencies)
    result.samples["throughput"] = throughput
    result.samples["latency"] = {
        name: {"count": len(values), "median_ms": 1000 * median(values), "p99_ms": 1000 * percentile(values, 0.99)}
        for name, values in latencies.items()
    }


def _throughput_record(load: DnsperfResult, cpu_used: float | None) -> dict[str, Any]:
    record = load.to_json()
    if cpu_used is not None and load.completed:
        record["cpu_us_per_query"] = 1e6 * cpu_used / load.completed
    return record


def profile(
    context: BenchContext, settings: Settings, target: Target, query_file: Path, load_cpus: set[int], result: PartResult,
) -> None:
    """Sample runtad with py-spy while dnsperf loads its proxy."""
    assert target.pid is not None
    if context.remaining() < settings.profile_seconds + 10:
        result.notes.append("No profile: the time budget ran out before it.")
        return
    if profiler.py_spy_path() is None:
        result.notes.append("No profile: py-spy is not installed (.venv/bin/pip install py-spy).")
        return
    seconds = settings.profile_seconds
    argv = taskset_argv(load_cpus) + [
        "dnsperf", "-s", target.server, "-d", str(query_file), "-l", str(seconds + 2), "-q", str(settings.in_flight),
    ]  # fmt: skip
    load = subprocess.Popen(netns_argv(target.netns, argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=client_env())
    try:
        output = profiler.record(target.pid, seconds, context.work_dir / "runtad-profile.txt")
        result.profile = profiler.summarize(output, seconds)
    finally:
        load.wait(timeout=seconds + 30)


def add_rows(result: PartResult, settings: Settings) -> None:
    throughput = result.samples["throughput"]
    qps_series = {name: [run["qps"] for run in runs] for name, runs in throughput.items()}
    qps = {name: median(series) for name, series in qps_series.items()}
    cpu_series = {
        name: [run["cpu_us_per_query"] for run in runs if "cpu_us_per_query" in run]
        for name, runs in throughput.items() if name != "direct"
    }
    cpu = {name: median(series) for name, series in cpu_series.items()}
    latency = result.samples["latency"]
    rate = f"at {settings.latency_rate:,} q/s"

    result.add(Row(
        "queries/s, one core", "q/s", "dnsmasq --nftset peer", qps["dnsmasq"], qps["runtad"],
        goal=Goal("ratio", ">=", 0.5, "≥ 0.5 of dnsmasq"),
        paired_ratio=paired_ratio(qps_series["runtad"], qps_series["dnsmasq"]),
    ))  # fmt: skip
    result.add(Row(
        "queries/s, one core", "q/s", "upstream queried directly", qps["direct"], qps["runtad"],
        goal=Goal("value", ">=", 10_000, "≥ 10,000 q/s"),
        paired_ratio=paired_ratio(qps_series["runtad"], qps_series["direct"]),
    ))  # fmt: skip


    result.add(Row(
        f"median latency {rate}", "ms", "upstream queried directly", latency["direct"]["median_ms"],
        latency["runtad"]["median_ms"], higher_is_better=False,
        goal=Goal("difference", "<=", 0.3, "≤ 0.3 ms added"),
    ))  # fmt: skip
    result.add(Row(
        f"p99 latency {rate}", "ms", "upstream queried directly", latency["direct"]["p99_ms"],
        latency["runtad"]["p99_ms"], higher_is_better=False,
    ))  # fmt: skip
    result.add(Row(
        f"median latency {rate}", "ms", "dnsmasq --nftset peer", latency["dnsmasq"]["median_ms"],
        latency["runtad"]["median_ms"], higher_is_better=False,
    ))  # fmt: skip
    result.add(Row(
        f"p99 latency {rate}", "ms", "dnsmasq --nftset peer", latency["dnsmasq"]["p99_ms"],
        latency["runtad"]["p99_ms"], higher_is_better=False,
    ))  # fmt: skip
    result.add(Row(
        "CPU time per query (all threads)", "µs", "dnsmasq --nftset peer", cpu["dnsmasq"], cpu["runtad"],
        higher_is_better=False, paired_ratio=paired_ratio(cpu_series["runtad"], cpu_series["dnsmasq"]),
    ))  # fmt: skip
    result.notes.append(
        f"Throughput: medians of {len(qps_series['runtad'])} rounds of {settings.throughput_seconds} s with"
        f" {settings.in_flight} queries in flight, targets interleaved; latency: every reply of"
        f" {settings.latency_seconds} s per round at {settings.latency_rate:,} q/s offered."
        f" runtad and the peer dnsmasq ran on CPU {result.samples['cpus']['server']}, the load and the upstream"
        f" on CPU {result.samples['cpus']['load']}."
    )
    costs = {(record["refresh"], record["batch"]): record for record in result.samples["nft_set_updates"]}
    one, batched = costs[(True, 1)], costs[(True, max(nftcost.BATCH_SIZES))]
    plain = costs[(False, 1)]
    result.notes.append(
        f"Set updates through runtad's own builders and NftContext, without the daemon (the proxy's set"
        f" writer puts every answer of one event-loop turn in one transaction): one element per"
        f" transaction with the add-delete-add refresh {one['us_per_transaction']:.0f} µs;"
        f" {batched['batch']} elements in one transaction {batched['us_per_element']:.1f} µs per element;"
        f" one element without the refresh {plain['us_per_transaction']:.0f} µs."
    )
    elements = result.samples["set_elements"]
    result.notes.append(
        f"Set elements after the runs: runtad's allow4 {elements['runtad']}, the peer's {elements['dnsmasq']}"
        f" (the upstream's answers use {len(ADDRESS_POOL)} distinct addresses)."
    )
