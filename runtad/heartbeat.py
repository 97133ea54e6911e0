"""When runtad was last alive, kept on disk so that a restart can report the gap.

While runtad is down the kernel keeps enforcing, DNS in every sandbox fails fast and
nothing new is allowed. The audit trail shows that interval as one event per sandbox.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

# Seconds between writes; the reported start of a gap is at most this early.
BEAT_SECONDS = 5.0


@dataclass(frozen=True)
class Downtime:
    since: float  # the last time runtad was known alive, in seconds since the epoch
    until: float
    clean: bool  # runtad stopped on a signal rather than crashing or being killed

    @property
    def seconds(self) -> float:
        return max(0.0, self.until - self.since)

    def describe(self) -> str:
        how = "stopped" if self.clean else "crashed or was killed"
        return f"{self.seconds:.1f} s (runtad {how})"


class Heartbeat:
    def __init__(self, path: Path, clock: "object" = time.time) -> None:
        self.path = path
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    def previous_downtime(self) -> Downtime | None:
        """Return the gap since the last run's final beat, or None on a first start."""
        try:
            state = json.loads(self.path.read_text())
            since = float(state["alive_at"])
            clean = bool(state.get("stopped", False))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return Downtime(since, self._now(), clean)

    def start(self) -> None:
        self._write(stopped=False)
        self._task = asyncio.get_running_loop().create_task(self._beat())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._write(stopped=True)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(BEAT_SECONDS)
            self._write(stopped=False)

    def _now(self) -> float:
        return float(self._clock())  # type: ignore[operator]

    def _write(self, *, stopped: bool) -> None:
        # A full disk must not stop the daemon: the gap is then reported longer than it was.
        temporary = self.path.with_suffix(".tmp")
        try:
            temporary.write_text(json.dumps({"alive_at": self._now(), "stopped": stopped}))
            os.replace(temporary, self.path)
        except OSError:
            pass
