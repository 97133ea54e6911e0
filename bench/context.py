"""The mode, work directory, time budget and progress log that the runner hands every part."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


class BudgetExceededError(Exception):
    """A part ran past its time budget; the part stops and reports what it measured."""

    def __init__(self, part: str, budget: float) -> None:
        super().__init__(f"part {part} ran past its budget of {budget:.0f} s")
        self.part = part
        self.budget = budget


@dataclass
class BenchContext:
    part: str
    smoke: bool
    work_dir: Path
    budget_seconds: float
    started: float = field(default_factory=time.monotonic)

    @property
    def deadline(self) -> float:
        return self.started + self.budget_seconds

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def check_budget(self) -> None:
        if self.remaining() <= 0:
            raise BudgetExceededError(self.part, self.budget_seconds)

    def log(self, message: str) -> None:
        """Write a progress line to stderr, so stdout carries only the results."""
        elapsed = time.monotonic() - self.started
        print(f"[bench {self.part} {elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)
