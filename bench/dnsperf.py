"""dnsperf runs, bounded in time, and the figures read from their output.

dnsperf prints throughput and the mean latency; with -v it prints every reply's latency,
from which the median and p99 come.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.procfs import taskset_argv
from tests.lab.netns import netns_argv
from tests.lab.processes import client_env

# Seconds a query may stay unanswered before dnsperf counts it lost.
QUERY_TIMEOUT = 2
_QPS = re.compile(r"Queries per second:\s+([\d.]+)")
_COMPLETED = re.compile(r"Queries completed:\s+(\d+)")
_LOST = re.compile(r"Queries lost:\s+(\d+)")
_AVERAGE = re.compile(r"Average Latency \(s\):\s+([\d.]+)")
_REPLY = re.compile(r"^> (\w+) \S+ \S+ ([\d.]+)$", re.MULTILINE)


class DnsperfFailedError(Exception):
    """dnsperf exited with an error or printed no statistics."""

    def __init__(self, argv: list[str], returncode: int, output: str) -> None:
        super().__init__(f"dnsperf failed with exit code {returncode} ({' '.join(argv)}): {output.strip()[-800:]}")
        self.argv = argv
        self.returncode = returncode


@dataclass
class DnsperfResult:
    qps: float
    completed: int
    lost: int
    mean_latency: float  # seconds
    latencies: list[float] = field(default_factory=list)  # seconds, with -v only
    rcodes: dict[str, int] = field(default_factory=dict)  # with -v only

    def to_json(self) -> dict[str, Any]:
        return {"qps": self.qps, "completed": self.completed, "lost": self.lost, "mean_latency": self.mean_latency}


def write_query_file(path: Path, names: list[str], rtype: str = "A") -> Path:
    path.write_text("".join(f"{name} {rtype}\n" for name in names))
    return path


def run_dnsperf(
    netns: str, server: str, query_file: Path, seconds: float, *, in_flight: int = 100,
    max_qps: int | None = None, per_query: bool = False, cpus: set[int] | None = None,
) -> DnsperfResult:
    """Run dnsperf in netns against server for seconds; per_query adds every reply's latency."""
    argv = [
        "dnsperf", "-s", server, "-d", str(query_file), "-l", str(seconds),
        "-q", str(in_flight), "-t", str(QUERY_TIMEOUT),
    ]  # fmt: skip
    if max_qps is not None:
        argv += ["-Q", str(max_qps)]
    if per_query:
        argv.append("-v")
    if cpus is not None:
        argv = taskset_argv(cpus) + argv
    completed = subprocess.run(
        netns_argv(netns, argv), capture_output=True, text=True, env=client_env(),
        timeout=seconds + QUERY_TIMEOUT + 30, check=False,
    )
    return parse_output(argv, completed.returncode, completed.stdout + completed.stderr)


def parse_output(argv: list[str], returncode: int, output: str) -> DnsperfResult:
    qps = _QPS.search(output)
    finished = _COMPLETED.search(output)
    lost = _LOST.search(output)
    average = _AVERAGE.search(output)
    if returncode != 0 or not (qps and finished and lost and average):
        raise DnsperfFailedError(argv, returncode, output)
    result = DnsperfResult(float(qps[1]), int(finished[1]), int(lost[1]), float(average[1]))
    for rcode, latency in _REPLY.findall(output):
        result.latencies.append(float(latency))
        result.rcodes[rcode] = result.rcodes.get(rcode, 0) + 1
    return result
