"""A restored sandbox's first lookups wait for the reconcile of every sandbox, without a kernel."""

from __future__ import annotations

import asyncio
import math
import time

from runtad.config import Config
from runtad.hosts import parse_rules
from runtad.sandbox import HostStatus, Sandbox
from runtad.store import PolicyRecord, RuntimeRecord
from runtad.upstream import Upstream

HOST = "a.example.test"
GATE_DELAY = 0.1


def make_sandbox(gate: asyncio.Event | None, lifetime: float | None) -> Sandbox:
    record = RuntimeRecord(1, "gate", "/run/netns/none", True, None, None, "2026-01-01T00:00:00Z")
    policy = PolicyRecord(True, (HOST,), 1)
    sandbox = Sandbox(record, policy, parse_rules([HOST]), Config(), Upstream((), 1.0), {}, refresh_gate=gate)
    sandbox._restored_lifetime = lifetime
    return sandbox


def hold(sandbox: Sandbox, gate: asyncio.Event | None, open_after: float | None) -> float:
    """Run the hold, opening the gate after open_after seconds; return the seconds it held."""

    async def scenario() -> float:
        if gate is not None and open_after is not None:
            asyncio.get_running_loop().call_later(open_after, gate.set)
        began = time.monotonic()
        await sandbox._hold_until_reconciled()
        return time.monotonic() - began

    return asyncio.run(scenario())


def test_hold_waits_for_gate() -> None:
    gate = asyncio.Event()
    sandbox = make_sandbox(gate, lifetime=300.0)
    assert hold(sandbox, gate, GATE_DELAY) >= GATE_DELAY


def test_hold_shifts_first_attempts() -> None:
    gate = asyncio.Event()
    sandbox = make_sandbox(gate, lifetime=300.0)
    planned = time.time() + 1.0
    sandbox.statuses[HOST] = HostStatus(next_attempt=planned)
    hold(sandbox, gate, GATE_DELAY)
    assert sandbox.statuses[HOST].next_attempt >= planned + GATE_DELAY


def test_hold_keeps_pending_lookup() -> None:
    gate = asyncio.Event()
    sandbox = make_sandbox(gate, lifetime=300.0)
    sandbox.statuses[HOST] = HostStatus(next_attempt=math.inf)
    hold(sandbox, gate, GATE_DELAY)
    assert sandbox.statuses[HOST].next_attempt == math.inf


def test_hold_ends_before_elements_expire() -> None:
    gate = asyncio.Event()
    sandbox = make_sandbox(gate, lifetime=0.4)
    # The gate never opens: the hold ends at a quarter of the earliest lifetime.
    assert hold(sandbox, gate, None) < 0.4 / 2


def test_hold_skips_without_restored_elements() -> None:
    gate = asyncio.Event()
    sandbox = make_sandbox(gate, lifetime=None)
    assert hold(sandbox, gate, None) < GATE_DELAY


def test_hold_skips_open_gate() -> None:
    gate = asyncio.Event()
    gate.set()
    sandbox = make_sandbox(gate, lifetime=300.0)
    assert hold(sandbox, gate, None) < GATE_DELAY


def test_hold_skips_without_gate() -> None:
    sandbox = make_sandbox(None, lifetime=300.0)
    assert hold(sandbox, None, None) < GATE_DELAY
