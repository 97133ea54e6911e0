"""Sample a running Python process with py-spy and reduce the stacks to top frames.

py-spy records only threads that are running on a CPU (not those waiting on a socket
or for the GIL), so a thread's share of the wall clock is how busy it was.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

SAMPLE_RATE = 100
THREAD_FRAME = re.compile(r"^thread \(\d+\): (?P<name>.*)$")
# Worker threads are numbered (asyncio_0, asyncio_1, ...): report them together.
THREAD_NUMBER = re.compile(r"_\d+$")
LINE_NUMBER = re.compile(r":\d+\)$")


def py_spy_path() -> str | None:
    beside_python = Path(sys.executable).parent / "py-spy"
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("py-spy")


class ProfileFailedError(Exception):
    """py-spy exited with an error or wrote no profile."""

    def __init__(self, returncode: int | None, stderr: str) -> None:
        super().__init__(f"py-spy record failed with exit code {returncode}: {stderr.strip()[-500:]}")
        self.returncode = returncode


def _record_argv(pid: int, seconds: float, output: Path) -> list[str]:
    executable = py_spy_path()
    if executable is None:
        raise FileNotFoundError("py-spy is not installed: run .venv/bin/pip install py-spy")
    return [
        executable, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
        "--rate", str(SAMPLE_RATE), "--threads", "--nonblocking", "--format", "raw", "--output", str(output),
    ]  # fmt: skip


def record(pid: int, seconds: float, output: Path) -> Path:
    """Sample pid for seconds into output (py-spy's raw collapsed-stack format)."""
    completed = subprocess.run(_record_argv(pid, seconds, output), capture_output=True, text=True, timeout=seconds + 60, check=False)
    if completed.returncode != 0 or not output.exists():
        raise ProfileFailedError(completed.returncode, completed.stderr)
    return output


class Recording:
    """A py-spy recording started now and stopped by stop(), for a span of unknown length."""

    def __init__(self, pid: int, output: Path, max_seconds: float) -> None:
        self.output = output
        self.started = time.monotonic()
        self.seconds = 0.0
        self._process = subprocess.Popen(
            _record_argv(pid, max_seconds, output), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )

    def stop(self) -> Path:
        """End sampling (py-spy writes its output on SIGINT) and return the profile's path."""
        self.seconds = time.monotonic() - self.started
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
        try:
            _, stderr = self._process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            _, stderr = self._process.communicate(timeout=10)
        if not self.output.exists():
            raise ProfileFailedError(self._process.returncode, stderr)
        return self.output


def read_stacks(path: Path) -> list[tuple[str, list[str], int]]:
    """Return (thread name, frames root first, sample count) for each line of a raw profile."""
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        thread = "unknown"
        match = THREAD_FRAME.match(frames[0])
        if match:
            thread = THREAD_NUMBER.sub("_N", match["name"])
            frames = frames[1:]
        stacks.append((thread, frames, int(count)))
    return stacks


def summarize(path: Path, seconds: float, top: int = 10) -> list[dict[str, Any]]:
    """Reduce a raw profile to findings, each {"kind", "frame", "share"} with share in percent.

    kind "thread": the share of the wall clock a thread (or all numbered workers together)
    was on a CPU. "self": the share of all on-CPU samples spent in a frame's own line.
    "inclusive": the share of on-CPU samples with a function anywhere on the stack.
    """
    stacks = read_stacks(path)
    total = sum(count for _, _, count in stacks)
    if total == 0:
        return []
    per_thread: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for thread, frames, count in stacks:
        per_thread[thread] += count
        if frames:
            self_time[frames[-1]] += count
        for function in {LINE_NUMBER.sub(")", frame) for frame in frames}:
            inclusive[function] += count

    possible = seconds * SAMPLE_RATE
    findings: list[dict[str, Any]] = [
        {"kind": "thread", "frame": thread, "share": 100 * count / possible}
        for thread, count in per_thread.most_common()
    ]
    findings += [
        {"kind": "self", "frame": frame, "share": 100 * count / total}
        for frame, count in self_time.most_common(top)
    ]
    interesting = [
        (function, count) for function, count in inclusive.most_common()
        if _is_interesting(function)
    ]
    findings += [
        {"kind": "inclusive", "frame": function, "share": 100 * count / total}
        for function, count in interesting[:top]
    ]
    return findings


def _is_interesting(function: str) -> bool:
    """Keep runtad's own functions and the libraries it calls; drop the event loop's frames."""
    return "runtad/" in function or "nftables.py" in function or "sqlite" in function
