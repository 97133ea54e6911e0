"""Owner records of running labs, and removal of namespaces that crashed runs left behind.

A lab writes ``/run/runta-lab/<lab name>`` (its pid and that process's start time)
before it creates any namespace and removes it on close. cleanup_stale() deletes
only namespaces whose record is missing or names a process that is gone, so it is
safe to call while other labs run in parallel.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from tests.lab.netns import delete_netns, list_netns, netns_pids

REGISTRY_DIR = Path("/run/runta-lab")
LAB_NETNS_SUFFIXES = ("-host", "-inet")

# Seconds a leftover process gets after SIGTERM before it is sent SIGKILL.
STALE_PROCESS_GRACE = 3.0


def _process_start_time(pid: int) -> int | None:
    """Return the start time of ``pid`` in clock ticks since boot, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may contain spaces, so count fields after its ')'.
    fields_after_name = stat.rsplit(")", 1)[1].split()
    return int(fields_after_name[19])


def record_owner(lab_name: str) -> None:
    REGISTRY_DIR.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    record = {"pid": pid, "start_time": _process_start_time(pid)}
    (REGISTRY_DIR / lab_name).write_text(json.dumps(record))


def remove_owner(lab_name: str) -> None:
    (REGISTRY_DIR / lab_name).unlink(missing_ok=True)


def is_owner_alive(lab_name: str) -> bool:
    try:
        record = json.loads((REGISTRY_DIR / lab_name).read_text())
    except (FileNotFoundError, ValueError):
        return False
    start_time = _process_start_time(int(record["pid"]))
    return start_time is not None and start_time == record["start_time"]


def lab_name_of(netns: str) -> str:
    """Return the lab name of a lab namespace: ``rtl-1a2b3c-host`` gives ``rtl-1a2b3c``."""
    for suffix in LAB_NETNS_SUFFIXES:
        if netns.endswith(suffix):
            return netns.removesuffix(suffix)
    return netns


def _end_processes(pids: list[int]) -> None:
    """SIGTERM each pid, then SIGKILL those still alive after the grace period."""
    start_times = {pid: _process_start_time(pid) for pid in pids}
    for pid in pids:
        _signal_if_same(pid, start_times[pid], signal.SIGTERM)

    deadline = time.monotonic() + STALE_PROCESS_GRACE
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if _process_start_time(pid) == start_times[pid]]
        if not alive:
            return
        time.sleep(0.05)
    for pid in pids:
        _signal_if_same(pid, start_times[pid], signal.SIGKILL)


def _signal_if_same(pid: int, start_time: int | None, signum: int) -> None:
    # The start time guards against a pid that was reused since it was listed.
    if start_time is None or _process_start_time(pid) != start_time:
        return
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def cleanup_stale(prefix: str = "rtl-") -> list[str]:
    """Delete namespaces named ``prefix*`` that no running lab owns and return their names.

    Processes still running inside such a namespace were started by the crashed run
    and are ended by pid first.
    """
    if not prefix:
        raise ValueError("cleanup_stale needs a non-empty prefix")
    deleted = []
    for netns in list_netns():
        if not netns.startswith(prefix):
            continue
        lab_name = lab_name_of(netns)
        if is_owner_alive(lab_name):
            continue
        _end_processes(netns_pids(netns))
        delete_netns(netns)
        remove_owner(lab_name)
        deleted.append(netns)

    # Records of runs that died before creating a namespace.
    if REGISTRY_DIR.is_dir():
        for record in REGISTRY_DIR.glob(f"{prefix}*"):
            if not is_owner_alive(record.name):
                remove_owner(record.name)
    return deleted
