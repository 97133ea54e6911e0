"""The one place that hands nftables batches to the kernel, through libnftables' JSON API.

A context is bound to the network namespace it was created in, so each sandbox gets its
own, made by call_in_netns. A batch is one kernel transaction: it applies whole or not
at all, and callers keep their bookkeeping only when apply returns.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import nftables

from .lowfds import RESERVE
from .netns import call_in_netns

Command = dict[str, Any]

# Batches of at most this many commands run on the event loop thread (see run_async).
INLINE_MAX_COMMANDS = 16


class NftError(Exception):
    """libnftables rejected a batch; nothing of it was applied."""

    def __init__(self, netns: str, detail: str) -> None:
        super().__init__(f"nftables batch rejected in {netns}: {detail.strip()}")
        self.netns = netns
        self.detail = detail.strip()


class NftContext:
    """A libnftables context bound to one network namespace."""

    def __init__(self, netns_label: str, handle: nftables.Nftables) -> None:
        self.netns_label = netns_label
        self._handle = handle
        # libnftables contexts are not thread-safe; apply may run on any pool thread.
        self._lock = threading.Lock()
        self.last_apply_seconds = 0.0

    @classmethod
    def open(cls, netns_path: Path | None) -> "NftContext":
        """Create a context in the namespace at netns_path (None: the daemon's own)."""
        if netns_path is None:
            return cls("host", RESERVE.open_low(_new_handle))
        return cls(str(netns_path), RESERVE.open_low(lambda: call_in_netns(netns_path, _new_handle)))

    def run(self, commands: list[Command]) -> list[dict[str, Any]]:
        """Apply commands as one transaction and return the output objects (for lists)."""
        document = {"nftables": commands}
        with self._lock:
            started = time.perf_counter()
            rc, output, error = self._handle.json_cmd(document)
            self.last_apply_seconds = time.perf_counter() - started
        if rc != 0:
            raise NftError(self.netns_label, error or f"exit status {rc}")
        if not output:
            return []
        return [item for item in output.get("nftables", []) if "metainfo" not in item]

    async def run_async(self, commands: list[Command]) -> list[dict[str, Any]]:
        """Apply commands without stalling the event loop for long.

        A small batch takes tens of microseconds in libnftables, less than handing it to a
        worker thread, so it runs inline when no other batch has the context locked. Large
        batches (a policy of thousands of hosts) go to a thread.
        """
        if len(commands) <= INLINE_MAX_COMMANDS and self._lock.acquire(blocking=False):
            self._lock.release()
            return self.run(commands)
        return await asyncio.to_thread(self.run, commands)


def _new_handle() -> nftables.Nftables:
    handle = nftables.Nftables()
    handle.set_json_output(True)
    handle.set_handle_output(False)
    return handle
