"""Data path part: TCP throughput and short-connection rate from an enforced sandbox.

One sandbox allows iperf.bench.test (an iperf3 server and a connect-and-close server
in the inet namespace); its sets also hold 10,000 filler addresses added with nft. The
same loads run in three states of that sandbox, interleaved round by round, with the
order reversed every other round so that load drifting during a round favours no state:

- enforced: the runta table with enforcement on;
- disabled: the same table after `runta egress disable` (chain policy accept);
- no table: the runta table deleted with nft, so the sandbox namespace does no
  connection tracking at all. `runta egress enable` puts it back afterwards.
"""

from __future__ import annotations

import ipaddress
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import nftsets
from bench.context import BenchContext
from bench.daemon import BenchDaemon
from bench.results import Goal, PartResult, Row
from bench.stats import median, paired_ratio, spread
from tests.e2e.runtad_process import SandboxHandle
from tests.lab.processes import client_env
from tests.lab.topology import Lab

TOOLS = ("iperf3", "nft")
BUDGET_SECONDS = 180.0
SMOKE_BUDGET_SECONDS = 90.0

SERVER = "192.0.2.80"
SERVER_NAME = "iperf.bench.test"
IPERF_PORT = 5201
CONNECT_PORT = 5300
FILLER_COUNT = 10_000
FILLER_TIMEOUT = 3600
CONNRATE_SCRIPT = Path(__file__).with_name("connrate.py")
STATES = ("enforced", "disabled", "no table")
LISTEN_TIMEOUT = 10.0


@dataclass(frozen=True)
class Settings:
    rounds: int
    iperf_seconds: int
    omit_seconds: int  # iperf3 -O: leading seconds left out of the figure (slow start)
    connect_seconds: float


FULL = Settings(rounds=6, iperf_seconds=1, omit_seconds=1, connect_seconds=1.0)
SMOKE = Settings(rounds=2, iperf_seconds=1, omit_seconds=0, connect_seconds=0.5)


class DatapathStepError(Exception):
    """A step of the data path part failed: a client, a policy change or the table restore."""

    def __init__(self, step: str, detail: str) -> None:
        super().__init__(f"{step} failed: {detail.strip()[-800:]}")
        self.step = step


def filler_addresses(count: int = FILLER_COUNT) -> list[str]:
    """Return count distinct documentation addresses: two IPv4 /24s, then 2001:db8:1::/64."""
    ipv4 = [str(address) for network in ("203.0.113.0/24", "198.51.100.0/24") for address in ipaddress.ip_network(network)]
    ipv4 = ipv4[:count]
    base = int(ipaddress.IPv6Address("2001:db8:1::"))
    ipv6 = [str(ipaddress.IPv6Address(base + index + 1)) for index in range(count - len(ipv4))]
    return ipv4 + ipv6


def run(context: BenchContext) -> PartResult:
    settings = SMOKE if context.smoke else FULL
    result = PartResult(context.part)
    with Lab() as lab:
        start_servers(lab, context)
        daemon = BenchDaemon(lab, context.work_dir / "runtad")
        daemon.start()
        try:
            sandbox = daemon.create_sandbox()
            for action, hosts in (("allow", [SERVER_NAME]), ("enable", None)):
                sandbox.post(action, hosts).raise_for_status()
            fill_sets(sandbox, context.work_dir)
            result.samples["set_elements"] = count_elements(sandbox)
            samples: dict[str, list[dict[str, float]]] = {state: [] for state in STATES}
            round_seconds = len(STATES) * (2 * (settings.iperf_seconds + settings.omit_seconds) + settings.connect_seconds + 6)
            current = "enforced"
            for round_index in range(settings.rounds):
                if round_index > 0 and context.remaining() < round_seconds:
                    result.notes.append(f"Only {round_index} of {settings.rounds} rounds ran, to stay within the time budget.")
                    break
                order = STATES if round_index % 2 == 0 else tuple(reversed(STATES))
                for state in order:
                    current = change_state(daemon, sandbox, context.work_dir, current, state)
                    samples[state].append(measure(lab, sandbox, settings))
                    context.log(f"round {round_index + 1} {state}: {_brief(samples[state][-1])}")
            change_state(daemon, sandbox, context.work_dir, current, "enforced")
            result.samples["runs"] = samples
            result.samples["set_elements_after_restore"] = count_elements(sandbox)
        finally:
            daemon.close()
    add_rows(result, settings)
    return result


def start_servers(lab: Lab, context: BenchContext) -> None:
    lab.add_host(SERVER_NAME, v4=[SERVER], web=False)
    lab.spawn(lab.inet_netns, ["iperf3", "--server", "--bind", SERVER, "--port", str(IPERF_PORT)], log_path=context.work_dir / "iperf3.log")
    connrate_argv = [
        sys.executable, str(CONNRATE_SCRIPT), "serve", SERVER, str(CONNECT_PORT),
        "--seconds", str(round(context.budget_seconds)),
    ]  # fmt: skip
    lab.spawn(lab.inet_netns, connrate_argv, log_path=context.work_dir / "connrate.log")
    wait_listening(lab, [IPERF_PORT, CONNECT_PORT])


def wait_listening(lab: Lab, ports: list[int]) -> None:
    """Poll ss in the inet namespace; a probe connection would disturb iperf3's control channel."""
    deadline = time.monotonic() + LISTEN_TIMEOUT
    while time.monotonic() < deadline:
        listing = lab.exec_in(lab.inet_netns, ["ss", "-Hltn"]).stdout
        if all(f"{SERVER}:{port} " in listing for port in ports):
            return
        time.sleep(0.05)
    raise DatapathStepError("starting the servers", f"nothing listens on {SERVER} ports {ports} after {LISTEN_TIMEOUT:.0f} s")


def fill_sets(sandbox: SandboxHandle, work_dir: Path) -> None:
    addresses = filler_addresses()
    ipv4 = [address for address in addresses if ":" not in address]
    ipv6 = [address for address in addresses if ":" in address]
    nftsets.add_elements(sandbox.netns, work_dir / "fill4.nft", "runta", "allow4", ipv4, FILLER_TIMEOUT)
    nftsets.add_elements(sandbox.netns, work_dir / "fill6.nft", "runta", "allow6", ipv6, FILLER_TIMEOUT)


def count_elements(sandbox: SandboxHandle) -> dict[str, Any]:
    ipv4 = nftsets.set_elements(sandbox.netns, "runta", "allow4")
    ipv6 = nftsets.set_elements(sandbox.netns, "runta", "allow6")
    return {"allow4": len(ipv4), "allow6": len(ipv6), "server_present": SERVER in ipv4}


def change_state(daemon: BenchDaemon, sandbox: SandboxHandle, work_dir: Path, current: str, target: str) -> str:
    """Move the sandbox from state current to state target and return target.

    The table is only deleted while enforcement is disabled, so that `runta egress
    enable` is a change of policy and puts it back.
    """
    if current == target:
        return target
    if current == "no table":
        restore_table(daemon, sandbox, work_dir)
        current = "enforced"
    if target == "no table":
        if current == "enforced":
            _cli(daemon, "egress", "disable", sandbox.name)
        nftsets.delete_table(sandbox.netns, "runta")
    elif target == "disabled" and current == "enforced":
        _cli(daemon, "egress", "disable", sandbox.name)
    elif target == "enforced" and current == "disabled":
        _cli(daemon, "egress", "enable", sandbox.name)
    return target


def restore_table(daemon: BenchDaemon, sandbox: SandboxHandle, work_dir: Path) -> None:
    """Put the table back with `runta egress enable`, then refill what deleting it emptied.

    The server's address comes back through the sandbox's own DNS query, as a client's
    would; the filler addresses are added with nft again.
    """
    _cli(daemon, "egress", "enable", sandbox.name)
    if not nftsets.table_exists(sandbox.netns, "runta"):
        raise DatapathStepError("runta egress enable", "the runta table is still missing after the command")
    lookup = sandbox.dig(SERVER_NAME, "A", "+short")
    if SERVER not in lookup.stdout.split():
        raise DatapathStepError(f"resolving {SERVER_NAME} in the sandbox", lookup.stdout + lookup.stderr)
    fill_sets(sandbox, work_dir)


def _cli(daemon: BenchDaemon, *args: str) -> None:
    completed = daemon.cli(*args)
    if completed.returncode != 0:
        raise DatapathStepError("runta " + " ".join(args), completed.stderr)


def measure(lab: Lab, sandbox: SandboxHandle, settings: Settings) -> dict[str, float]:
    return {
        "gbit_1_stream": iperf(lab, sandbox, 1, settings),
        "gbit_4_streams": iperf(lab, sandbox, 4, settings),
        **connection_rate(lab, sandbox, settings),
    }


def iperf(lab: Lab, sandbox: SandboxHandle, streams: int, settings: Settings) -> float:
    """Run an iperf3 client in the sandbox; return the received throughput in Gbit/s."""
    argv = [
        "iperf3", "--client", SERVER, "--port", str(IPERF_PORT), "--time", str(settings.iperf_seconds),
        "--omit", str(settings.omit_seconds), "--parallel", str(streams), "--json", "--connect-timeout", "3000",
    ]  # fmt: skip
    timeout = settings.iperf_seconds + settings.omit_seconds + 30
    completed = lab.exec_in(sandbox.netns, argv, env=client_env(), timeout=timeout)
    try:
        report = json.loads(completed.stdout)
        return float(report["end"]["sum_received"]["bits_per_second"]) / 1e9
    except (json.JSONDecodeError, KeyError) as error:
        raise DatapathStepError(f"iperf3 with {streams} streams", f"{error}: {completed.stdout[-400:]} {completed.stderr}") from None


def connection_rate(lab: Lab, sandbox: SandboxHandle, settings: Settings) -> dict[str, float]:
    argv = [
        sys.executable, str(CONNRATE_SCRIPT), "connect", SERVER, str(CONNECT_PORT),
        "--seconds", str(settings.connect_seconds),
    ]  # fmt: skip
    completed = lab.exec_in(sandbox.netns, argv, env=client_env(), timeout=settings.connect_seconds + 30)
    try:
        report = json.loads(completed.stdout)
    except json.JSONDecodeError:
        raise DatapathStepError("the short-connection client", completed.stdout + completed.stderr) from None
    return {"connections_per_second": float(report["rate"]), "connect_failures": float(report["failures"])}


def _brief(sample: dict[str, float]) -> str:
    return (
        f"{sample['gbit_1_stream']:.2f} Gbit/s (1), {sample['gbit_4_streams']:.2f} Gbit/s (4),"
        f" {sample['connections_per_second']:,.0f} conn/s"
    )


def add_rows(result: PartResult, settings: Settings) -> None:
    runs: dict[str, list[dict[str, float]]] = result.samples["runs"]
    figures = {
        "TCP throughput, 1 stream": ("gbit_1_stream", "Gbit/s"),
        "TCP throughput, 4 streams": ("gbit_4_streams", "Gbit/s"),
        "short connections": ("connections_per_second", "conn/s"),
    }
    summary: dict[str, dict[str, Any]] = {}
    for name, (key, unit) in figures.items():
        series = {state: [run[key] for run in runs[state]] for state in STATES}
        by_state = {state: median(values) for state, values in series.items()}
        summary[key] = {state: spread(values) for state, values in series.items()}
        result.add(Row(
            name, unit, "same sandbox, enforcement disabled", by_state["disabled"], by_state["enforced"],
            goal=Goal("ratio", ">=", 0.98, "≥ 0.98 of disabled"),
            paired_ratio=paired_ratio(series["enforced"], series["disabled"]),
        ))  # fmt: skip
        result.add(Row(
            name, unit, "same sandbox, no runta table", by_state["no table"], by_state["enforced"],
            paired_ratio=paired_ratio(series["enforced"], series["no table"]),
        ))  # fmt: skip
    result.samples["summary"] = summary
    failures = sum(run["connect_failures"] for state in STATES for run in runs[state])
    result.notes.append(
        f"Values are medians of {len(runs['enforced'])} interleaved rounds, ratios the medians of the rounds' own ratios; iperf3 {settings.iperf_seconds} s per run"
        f" after {settings.omit_seconds} s left out; short connections {settings.connect_seconds} s per run,"
        f" {failures:.0f} failed connects in all."
    )
    elements = result.samples["set_elements"]
    result.notes.append(
        f"Sets while measuring: {elements['allow4']} IPv4 and {elements['allow6']} IPv6 elements"
        f" (10,000 filler addresses plus the server's)."
    )
