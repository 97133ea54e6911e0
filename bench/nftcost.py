"""The kernel cost of the set updates runtad sends: one transaction per answer against batches.

Applies runtad's own set-update builder (runtad.ruleset.build_element_add) through
runtad's NftContext, to allow sets like the runta table's in a namespace of its own. The
figures are those of the daemon's code path without the daemon: time per transaction
and per element, for one element and for a batch, with and without the add-delete-add
refresh the address book asks for.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.namespaces import bench_netns
from runtad import ruleset
from runtad.nft import NftContext
from tests.lab.netns import netns_path

# Elements the measurement puts through the set per case, in total.
ELEMENTS_PER_CASE = 2048
BATCH_SIZES = (1, 64)


def allow_sets_commands() -> list[dict[str, Any]]:
    """Build the runta table with its two allow sets only (the chains do not take part in set updates)."""
    table = {"family": "inet", "name": ruleset.SANDBOX_TABLE}
    commands: list[dict[str, Any]] = [{"add": {"table": table}}]
    for name, kind in ((ruleset.SET_IPV4, "ipv4_addr"), (ruleset.SET_IPV6, "ipv6_addr")):
        spec = {"family": "inet", "table": ruleset.SANDBOX_TABLE, "name": name, "type": kind, "flags": ["timeout"]}
        commands.append({"add": {"set": spec}})
    return commands


def measure_set_updates(elements_per_case: int = ELEMENTS_PER_CASE) -> list[dict[str, Any]]:
    """Return one record per (refresh, batch size): microseconds per transaction and per element."""
    records = []
    with bench_netns("nft") as netns:
        context = NftContext.open(Path(netns_path(netns)))
        context.run(allow_sets_commands())
        for refresh in (True, False):
            for batch in BATCH_SIZES:
                transactions = max(1, elements_per_case // batch)
                started = time.perf_counter()
                for index in range(transactions):
                    elements = [(f"192.0.2.{(index * batch + offset) % 256}", 300) for offset in range(batch)]
                    context.run(ruleset.build_element_add(elements, refresh=refresh))
                elapsed = time.perf_counter() - started
                records.append({
                    "refresh": refresh,
                    "batch": batch,
                    "us_per_transaction": 1e6 * elapsed / transactions,
                    "us_per_element": 1e6 * elapsed / (transactions * batch),
                })  # fmt: skip
    return records
