"""A description of the machine a run measured: CPU model and count, memory, kernel, tools."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path


def _first_line(argv: list[str]) -> str:
    try:
        completed = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unavailable ({error})"
    text = (completed.stdout or completed.stderr).strip()
    return text.splitlines()[0] if text else "unavailable"


def _lscpu_field(name: str) -> str:
    for line in _lscpu_lines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return "unknown"


def _lscpu_lines() -> list[str]:
    try:
        completed = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return completed.stdout.splitlines()


def _memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / (1024 * 1024)
    return 0.0


def describe_machine() -> dict[str, str | int | float]:
    return {
        "cpu_model": _lscpu_field("Model name"),
        "cpus": os.cpu_count() or 0,
        "threads_per_core": _lscpu_field("Thread(s) per core"),
        "hypervisor": _lscpu_field("Hypervisor vendor"),
        "memory_gib": round(_memory_gib(), 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "nft": _first_line(["nft", "--version"]),
        "iperf3": _first_line(["iperf3", "--version"]),
        "dnsperf": _dnsperf_version(),
        "dnsmasq": _first_line(["dnsmasq", "--version"]),
        "load_average": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }


def describe_revision() -> str:
    """Return the checkout's commit, marked "+ local changes" when the working tree differs from it."""
    commit = _first_line(["git", "-C", str(Path(__file__).resolve().parents[1]), "rev-parse", "--short", "HEAD"])
    status = subprocess.run(
        ["git", "-C", str(Path(__file__).resolve().parents[1]), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True, text=True, timeout=10, check=False,
    )
    return f"{commit} + local changes" if status.stdout.strip() else commit


def _dnsperf_version() -> str:
    try:
        completed = subprocess.run(["dnsperf", "-h"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unavailable ({error})"
    for line in (completed.stdout + completed.stderr).splitlines():
        if line.startswith("Version"):
            return line.strip()
    return "unknown"
