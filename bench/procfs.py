"""Per-process figures from /proc: CPU time, resident memory, threads, open files; CPU pinning."""

from __future__ import annotations

import os
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """Return the user plus system CPU seconds of every thread of pid so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may contain spaces, so count fields after its ')'.
    fields = stat.rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLOCK_TICKS


def status_field_kib(pid: int, key: str) -> int:
    """Return a kB field of /proc/PID/status (VmRSS, VmHWM) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(f"{key} not found in /proc/{pid}/status: is {pid} a live process?")


def rss_mib(pid: int) -> float:
    return status_field_kib(pid, "VmRSS") / 1024


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def open_file_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def pin_process(pid: int, cpus: set[int]) -> None:
    """Restrict every current thread of pid to cpus; threads it starts later inherit this."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except ProcessLookupError:
            pass  # the thread ended between the listing and the call


def split_cpus() -> tuple[set[int], set[int]]:
    """Return (server CPUs, load CPUs): the last CPU for the server under test, the rest for load.

    On a single CPU both sets are that CPU, so nothing is pinned apart.
    """
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return set(available), set(available)
    return {available[-1]}, set(available[:-1])


def taskset_argv(cpus: set[int]) -> list[str]:
    return ["taskset", "-c", ",".join(str(cpu) for cpu in sorted(cpus))]
