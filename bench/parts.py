"""The registry of benchmark parts, run by name: ``python -m bench dns datapath apply scale``.

A part is a module of this package with

    TOOLS: tuple[str, ...]          # programs it needs on PATH (may be empty)
    BUDGET_SECONDS: float           # its share of the suite's time bound, full mode
    SMOKE_BUDGET_SECONDS: float     # the same in --smoke mode
    def run(context: BenchContext) -> PartResult

The built-in parts are always listed. The optional ones (audit ingestion, the gateway)
join the default run as soon as their module exists in bench/.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from bench.context import BenchContext
from bench.results import PartResult

BUILTIN_PARTS = {
    "dns": "bench.dns_proxy",
    "datapath": "bench.datapath",
    "apply": "bench.apply",
    "scale": "bench.scale",
}
OPTIONAL_PARTS = {
    "audit_ingest": "bench.audit_ingest",
    "gateway": "bench.gateway",
}


@dataclass(frozen=True)
class Part:
    name: str
    module: ModuleType

    @property
    def tools(self) -> tuple[str, ...]:
        return tuple(getattr(self.module, "TOOLS", ()))

    def budget(self, smoke: bool) -> float:
        key = "SMOKE_BUDGET_SECONDS" if smoke else "BUDGET_SECONDS"
        return float(getattr(self.module, key))

    @property
    def run(self) -> Callable[[BenchContext], PartResult]:
        function: Callable[[BenchContext], PartResult] = self.module.run
        return function


def available_parts() -> dict[str, str]:
    """Return part name → module name, the optional parts only where their module exists."""
    parts = dict(BUILTIN_PARTS)
    for name, module in OPTIONAL_PARTS.items():
        if importlib.util.find_spec(module) is not None:
            parts[name] = module
    return parts


def load_part(name: str) -> Part:
    parts = available_parts()
    if name not in parts:
        raise KeyError(f"unknown part {name!r}: choose from {', '.join(parts)}")
    return Part(name, importlib.import_module(parts[name]))
