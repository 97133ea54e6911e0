"""Scale part: many sandboxes with 20 allowed hosts each on one daemon, created 4 at a time.

Measures the daemon's resident memory (VmRSS) before and after, the creation rate, the
time from SIGTERM through a new start until GET /v1/status reports the reconcile, and
the deletion rate on a sample. Baselines measured in the same run: the same daemon with
no sandbox (memory, restart), and the kernel objects of one sandbox (namespace, veth
pair, addresses, and the runta table as runtad wrote it in a sandbox of its own) made
with ip and nft directly.
"""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench import nftsets, procfs
from bench.context import BenchContext
from bench.daemon import BenchDaemon, DaemonNotReadyError
from bench.namespaces import bench_netns
from bench.results import Goal, PartResult, Row
from bench.stats import median, percentile
from tests.lab.files import write_atomically
from tests.lab.netns import IP, run_checked
from tests.lab.topology import Lab

TOOLS = ("nft", "ip")
BUDGET_SECONDS = 300.0
SMOKE_BUDGET_SECONDS = 60.0

DOMAIN = "scale.bench.test"
HOSTS_PER_SANDBOX = 20
TTL = 300
STOP_TIMEOUT = 60.0
START_TIMEOUT = 120.0
# Sandboxes between two samples of the daemon's memory and open files while creating.
GROWTH_STEP = 10
# Creation requests in flight at once.
CLIENTS = 4
# Restarts of the daemon without sandboxes whose median is the restart baseline.
EMPTY_RESTARTS = 3
# Restarts with every sandbox: the one with the median SIGTERM-to-reconciled time is reported.
LOADED_RESTARTS = 3
# Sandboxes of a full run instead of 1,000, for trying a change on a smaller daemon.
SANDBOXES_VARIABLE = "RUNTA_BENCH_SCALE_SANDBOXES"


@dataclass(frozen=True)
class Settings:
    sandboxes: int
    delete_sample: int
    bare_sample: int
    reserve_seconds: float  # kept back from creation for the restart, deletions and cleanup


FULL = Settings(sandboxes=1000, delete_sample=20, bare_sample=20, reserve_seconds=90.0)
SMOKE = Settings(sandboxes=10, delete_sample=3, bare_sample=3, reserve_seconds=20.0)


class ScaleStepError(Exception):
    """A request of the scale part failed: sandbox creation, policy write, status or deletion."""

    def __init__(self, step: str, status: int, body: str) -> None:
        super().__init__(f"{step} failed with HTTP {status}: {body.strip()[-500:]}")
        self.step = step
        self.status = status


def host_names() -> list[str]:
    return [f"s{index}.{DOMAIN}" for index in range(HOSTS_PER_SANDBOX)]


def run(context: BenchContext) -> PartResult:
    settings = SMOKE if context.smoke else FULL
    if not context.smoke and os.environ.get(SANDBOXES_VARIABLE):
        settings = replace(FULL, sandboxes=int(os.environ[SANDBOXES_VARIABLE]))
    result = PartResult(context.part)
    samples = result.samples
    with Lab() as lab:
        document = lab.dns.document
        for index, name in enumerate(host_names()):
            document.set_records(name, "A", [f"192.0.2.{100 + index}"], TTL)
        write_atomically(lab.dns.zone_path, document.to_json())

        daemon = BenchDaemon(lab, context.work_dir / "runtad")
        daemon.start()
        try:
            with daemon.client() as client:
                table_file = copy_runta_table(daemon, client, context.work_dir / "runta-table.nft")
            samples["bare_create_seconds"] = create_bare(lab, table_file, settings.bare_sample)
            empty_restarts = [restart(daemon) for _ in range(EMPTY_RESTARTS)]
            samples["empty"] = {
                **process_figures(daemon.pid),
                "start_seconds": median([run["start_seconds"] for run in empty_restarts]),
                "total_seconds": median([run["total_seconds"] for run in empty_restarts]),
            }
            context.log(f"empty daemon: {samples['empty']['rss_mib']:.1f} MiB, restart {samples['empty']['total_seconds']:.2f} s")
            with daemon.client() as client:
                samples.update(create_many(context, settings, daemon, client))
            count = len(samples["create_seconds"])
            if "crash" in samples:
                # The process is gone: its last figures are those sampled while creating.
                samples["loaded"] = samples.get("last", {"sandboxes": 0, **samples["empty"]})
                context.log(f"runtad exited after {count} sandboxes: {samples['crash']['log_tail'][-1:]}")
            else:
                samples["loaded"] = {"sandboxes": count, **process_figures(daemon.pid)}
                samples["loaded"]["kernel_set_sample"] = len(nftsets.set_elements(f"{daemon.netns_prefix}s0", "runta", "allow4"))
            context.log(f"{count} sandboxes: {samples['loaded']['rss_mib']:.1f} MiB; restarting")
            try:
                samples["restarts"] = loaded_restarts(context, daemon, 1 if "crash" in samples else LOADED_RESTARTS)
            except DaemonNotReadyError as error:
                samples["restart_error"] = str(error)[-2000:]
            else:
                samples["restart"] = median_run(samples["restarts"])
                samples["after_restart"] = process_figures(daemon.pid)
                with daemon.client() as client:
                    samples["delete_seconds"] = delete_sample(client, min(settings.delete_sample, count))
        finally:
            daemon.close()
    add_rows(result, settings)
    return result


def copy_runta_table(daemon: BenchDaemon, client: httpx.Client, path: Path) -> Path:
    """Write the runta table of a fresh runtad sandbox to path as nft text, then delete that sandbox."""
    name = "template"
    response = client.post("/runtimes", json={"name": name})
    if response.status_code != 201:
        raise ScaleStepError(f"creating sandbox {name}", response.status_code, response.text)
    listing = nftsets.run_nft(f"{daemon.netns_prefix}{name}", ["list", "table", "inet", "runta"]).stdout
    response = client.delete(f"/runtimes/{name}")
    if response.status_code != 204:
        raise ScaleStepError(f"deleting sandbox {name}", response.status_code, response.text)
    path.write_text(listing)
    return path


def create_bare(lab: Lab, table_file: Path, count: int) -> list[float]:
    """Make the kernel objects of one sandbox with ip and nft, count times; return seconds each."""
    times = []
    with ExitStack() as stack:
        for index in range(count):
            started = time.perf_counter()
            netns = stack.enter_context(bench_netns(f"b{index}"))
            device = f"rtbv{index}"
            run_checked([IP, "-n", lab.host_netns, "link", "add", device, "type", "veth", "peer", "name", "eth0", "netns", netns])
            run_checked([IP, "-n", lab.host_netns, "addr", "add", f"10.214.{index // 64}.{(index % 64) * 4 + 1}/30", "dev", device])
            run_checked([IP, "-n", lab.host_netns, "link", "set", device, "up"])
            run_checked([IP, "-n", netns, "addr", "add", f"10.214.{index // 64}.{(index % 64) * 4 + 2}/30", "dev", "eth0"])
            run_checked([IP, "-n", netns, "link", "set", "eth0", "up"])
            nftsets.run_nft(netns, ["-f", str(table_file)])
            times.append(time.perf_counter() - started)
    return times


def create_many(context: BenchContext, settings: Settings, daemon: BenchDaemon, client: httpx.Client) -> dict[str, Any]:
    """Create sandboxes and give each 20 hosts with enforcement on, until done, out of budget, or runtad exits.

    CLIENTS requests are in flight at once, as an orchestrator starting many sandboxes
    would have, so that 1,000 sandboxes fit in the part's budget on a shared machine.
    """
    create_times: list[float] = []
    policy_times: list[float] = []
    growth: list[dict[str, Any]] = []
    outcome: dict[str, Any] = {"create_seconds": create_times, "policy_seconds": policy_times, "growth": growth}
    started = time.monotonic()
    clients = [client] + [daemon.client() for _ in range(CLIENTS - 1)]
    try:
        with ThreadPoolExecutor(CLIENTS) as pool:
            for first in range(0, settings.sandboxes, GROWTH_STEP):
                if context.remaining() < settings.reserve_seconds:
                    context.log(f"stopping creation at {first} sandboxes to keep time for the restart")
                    break
                indexes = range(first, min(first + GROWTH_STEP, settings.sandboxes))
                steps = list(pool.map(lambda index: create_one(clients[index % CLIENTS], index), indexes))
                done = [step for step in steps if isinstance(step, tuple)]
                for create_seconds, policy_seconds in done:
                    create_times.append(create_seconds)
                    policy_times.append(policy_seconds)
                failure = next((step for step in steps if not isinstance(step, tuple)), None)
                if failure is not None:
                    stop_creating(context, daemon, outcome, failure, len(create_times))
                    break
                outcome["last"] = {"sandboxes": len(create_times), **process_figures(daemon.pid)}
                growth.append(outcome["last"])
                if len(create_times) % 100 == 0:
                    context.log(f"{len(create_times)} sandboxes, {growth[-1]['rss_mib']:.1f} MiB, {growth[-1]['open_files']} open files")
    finally:
        for extra in clients[1:]:
            extra.close()
    outcome["creation_wall_seconds"] = time.monotonic() - started
    return outcome


def create_one(client: httpx.Client, index: int) -> tuple[float, float] | httpx.Response | httpx.TransportError:
    """Create sandbox s{index} and write its policy; return the seconds of each, or what failed."""
    name = f"s{index}"
    try:
        began = time.perf_counter()
        response = client.post("/runtimes", json={"name": name})
        if response.status_code != 201:
            return response
        created = time.perf_counter()
        response = client.put(f"/runtimes/{name}/egress", json={"enabled": True, "allowed_hosts": host_names()})
        if response.status_code != 200:
            return response
    except httpx.TransportError as error:
        return error
    return created - began, time.perf_counter() - created


def stop_creating(
    context: BenchContext, daemon: BenchDaemon, outcome: dict[str, Any],
    failure: httpx.Response | httpx.TransportError, count: int,
) -> None:
    """Record why creation ended: a 503 refusal or runtad's exit; raise on anything else."""
    if isinstance(failure, httpx.TransportError):
        if daemon.process is None or daemon.process.wait(timeout=5) is None:
            raise failure
        outcome["crash"] = {"after_sandboxes": count, "exit_code": daemon.process.returncode, "log_tail": log_tail(daemon)}
        return
    if failure.status_code == 503:
        # runtad serves no more sandboxes (a pool ran out): its limit is the figure.
        outcome["refused"] = {"after_sandboxes": count, "body": failure.text.strip()[-300:]}
        context.log(f"runtad refused sandbox {count + 1}: {failure.text.strip()[-200:]}")
        return
    raise ScaleStepError(f"{failure.request.method} {failure.request.url.path}", failure.status_code, failure.text)


def log_tail(daemon: BenchDaemon, lines: int = 5) -> list[str]:
    """Return the last lines of runtad's output other than audit records."""
    kept = [line for line in daemon.log_text().splitlines() if '"egress_audit"' not in line]
    return kept[-lines:]


def process_figures(pid: int) -> dict[str, Any]:
    return {
        "rss_mib": procfs.rss_mib(pid),
        "peak_rss_mib": procfs.status_field_kib(pid, "VmHWM") / 1024,
        "threads": procfs.thread_count(pid),
        "open_files": procfs.open_file_count(pid),
    }


def loaded_restarts(context: BenchContext, daemon: BenchDaemon, count: int) -> list[dict[str, Any]]:
    runs = []
    for _ in range(count):
        run = restart(daemon)
        runs.append(run)
        stop = "-" if run["stop_seconds"] is None else f"{run['stop_seconds']:.2f} s"
        exit_after = "-" if run.get("exit_seconds") is None else f"{run['exit_seconds']:.2f} s"
        context.log(
            f"restart: stop {stop} (exit {exit_after} after runtad_stopped),"
            f" start to reconciled {run['start_seconds']:.2f} s"
        )
    return runs


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the run with the median total time (start time when runtad had exited)."""
    ordered = sorted(runs, key=lambda run: run["total_seconds"] if run["total_seconds"] is not None else run["start_seconds"])
    return ordered[(len(ordered) - 1) // 2]


def stopped_log_time(daemon: BenchDaemon) -> float | None:
    """Return the Unix time of runtad's last runtad_stopped line, or None without one."""
    for line in reversed(daemon.log_text().splitlines()):
        if '"runtad_stopped"' in line:
            stamp = json.loads(line).get("timestamp")
            return datetime.fromisoformat(stamp).timestamp() if stamp else None
    return None


def restart(daemon: BenchDaemon) -> dict[str, Any]:
    """Stop runtad with SIGTERM (unless it already exited), start it, and wait for /v1/status to report the reconcile."""
    assert daemon.process is not None
    began = time.monotonic()
    was_running = daemon.process.poll() is None
    exit_seconds = None
    if was_running:
        daemon.process.send_signal(signal.SIGTERM)
        daemon.process.wait(timeout=STOP_TIMEOUT)
        exited = time.time()
        logged = stopped_log_time(daemon)
        exit_seconds = exited - logged if logged is not None else None
    stopped = time.monotonic()
    daemon.spawn()
    daemon.wait_answering(START_TIMEOUT)
    with daemon.client() as client:
        while True:
            response = client.get("/status")
            if response.status_code != 200:
                raise ScaleStepError("GET /v1/status", response.status_code, response.text)
            status = response.json()
            if status.get("last_reconcile"):
                break
            if time.monotonic() - stopped > START_TIMEOUT:
                raise ScaleStepError("waiting for last_reconcile in /v1/status", response.status_code, response.text)
            time.sleep(0.01)
    reconciled = time.monotonic()
    return {
        "sandboxes": status.get("runtimes"),
        "stop_seconds": stopped - began if was_running else None,
        "exit_seconds": exit_seconds,
        "start_seconds": reconciled - stopped,
        "total_seconds": reconciled - began if was_running else None,
    }


def delete_sample(client: httpx.Client, count: int) -> list[float]:
    times = []
    for index in range(count):
        started = time.perf_counter()
        response = client.delete(f"/runtimes/s{index}")
        if response.status_code != 204:
            raise ScaleStepError(f"deleting sandbox s{index}", response.status_code, response.text)
        times.append(time.perf_counter() - started)
    return times


def add_rows(result: PartResult, settings: Settings) -> None:
    samples = result.samples
    count = len(samples["create_seconds"])
    empty, loaded = samples["empty"], samples["loaded"]
    restarted = samples.get("restart")
    after = samples.get("after_restart")
    crash = samples.get("crash")
    result.add(Row(
        "sandboxes running on one daemon", "sandboxes", "-", None, float(loaded["sandboxes"]),
        goal=Goal("value", ">=", settings.sandboxes, f"{settings.sandboxes:,} sandboxes"),
    ))  # fmt: skip
    result.add(Row(
        f"resident memory, {loaded['sandboxes']:,} sandboxes", "MiB", "same daemon, no sandbox", empty["rss_mib"],
        loaded["rss_mib"], higher_is_better=False, goal=Goal("value", "<=", 300.0, "≤ 300 MB"),
    ))  # fmt: skip
    if restarted is not None and after is not None:
        result.add(Row(
            f"resident memory after restart, {restarted['sandboxes']:,} sandboxes", "MiB", "same daemon, no sandbox",
            empty["rss_mib"], after["rss_mib"], higher_is_better=False, goal=Goal("value", "<=", 300.0, "≤ 300 MB"),
        ))  # fmt: skip
        if restarted["total_seconds"] is not None:
            result.add(Row(
                f"SIGTERM to reconciled, {restarted['sandboxes']:,} sandboxes", "s", "same daemon, no sandbox",
                empty["total_seconds"], restarted["total_seconds"], higher_is_better=False,
                goal=Goal("value", "<=", 5.0, "≤ 5 s"),
            ))  # fmt: skip
        result.add(Row(
            f"start to reconciled, {restarted['sandboxes']:,} sandboxes", "s", "same daemon, no sandbox",
            empty["start_seconds"], restarted["start_seconds"], higher_is_better=False,
            goal=Goal("value", "<=", 5.0, "≤ 5 s") if restarted["total_seconds"] is None else None,
        ))  # fmt: skip
    bare_ms = 1000 * median(samples["bare_create_seconds"])
    result.add(Row(
        "create one sandbox (median)", "ms", "same kernel objects with ip and nft", bare_ms,
        1000 * median(samples["create_seconds"]), higher_is_better=False,
    ))  # fmt: skip
    result.add(Row(
        "create one sandbox (p99)", "ms", "same kernel objects with ip and nft", bare_ms,
        1000 * percentile(samples["create_seconds"], 0.99), higher_is_better=False,
    ))  # fmt: skip
    result.add(Row(
        "write a 20-host policy, enforcing (median)", "ms", "-", None, 1000 * median(samples["policy_seconds"]),
        higher_is_better=False,
    ))  # fmt: skip
    if samples.get("delete_seconds"):
        result.add(Row(
            "delete one sandbox (median)", "ms", "-", None, 1000 * median(samples["delete_seconds"]),
            higher_is_better=False,
        ))  # fmt: skip
    wall = samples["creation_wall_seconds"]
    result.add(Row("creation rate with policy", "sandboxes/s", "-", None, count / wall if wall and count else None))
    if loaded["sandboxes"]:
        per_sandbox_kib = 1024 * (loaded["rss_mib"] - empty["rss_mib"]) / loaded["sandboxes"]
        per_sandbox_files = (loaded["open_files"] - empty["open_files"]) / loaded["sandboxes"]
        result.add(Row("memory per sandbox", "KiB", "-", None, per_sandbox_kib, higher_is_better=False))
        result.add(Row("open files per sandbox", "files", "-", None, per_sandbox_files, higher_is_better=False))

    if count < settings.sandboxes and crash is None and "refused" not in samples:
        result.notes.append(f"Creation stopped at {count:,} of {settings.sandboxes:,} sandboxes to stay within the time budget.")
    if crash is not None:
        result.notes.append(
            f"runtad exited with status {crash['exit_code']} while sandbox {crash['after_sandboxes'] + 1} was being"
            f" created ({loaded['open_files']:,} open files at the last sample). Its last output line:"
            f" {crash['log_tail'][-1][:300]}"
        )
    if "refused" in samples:
        refused = samples["refused"]
        result.notes.append(f"runtad refused sandbox {refused['after_sandboxes'] + 1:,} with HTTP 503: {refused['body']}")
    if restarted is not None and restarted["total_seconds"] is None:
        result.notes.append("runtad had exited, so the restart was timed from its start, without a SIGTERM.")
    if len(samples.get("restarts", [])) > 1:
        runs = samples["restarts"]
        result.notes.append(
            f"{len(runs)} restarts with every sandbox, the median reported. Stop (SIGTERM to exit): "
            + ", ".join("-" if run["stop_seconds"] is None else f"{run['stop_seconds']:.2f}" for run in runs)
            + " s; exit after runtad_stopped: "
            + ", ".join("-" if run.get("exit_seconds") is None else f"{run['exit_seconds']:.2f}" for run in runs)
            + " s; start to reconciled: " + ", ".join(f"{run['start_seconds']:.2f}" for run in runs) + " s."
        )
    if "restart_error" in samples:
        result.notes.append(f"The restart failed: {samples['restart_error'][-600:]}")
    result.notes.append(
        f"With {loaded['sandboxes']:,} sandboxes: {loaded['threads']} threads, {loaded['open_files']:,} open files,"
        f" peak RSS {loaded['peak_rss_mib']:.1f} MiB."
        + (f" Sandbox s0's allow4 set held {loaded['kernel_set_sample']} of {HOSTS_PER_SANDBOX} addresses." if "kernel_set_sample" in loaded else "")
        + (f" After the restart: {after['open_files']:,} open files." if after else "")
    )
