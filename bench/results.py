"""The result of a benchmark part: rows of (baseline, runtad, ratio, goal) and raw figures.

Every row compares a runtad figure with a baseline measured in the same run, because on
a shared machine only the ratio carries over to another run.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Goal:
    """A target for one row: the ratio, the runtad value or their difference, against a limit."""

    on: str  # "ratio", "value", or "difference" (runtad value minus baseline)
    op: str  # ">=" or "<="
    limit: float
    text: str  # the goal as written in the brief, shown in tables

    def is_met(self, row: Row) -> bool | None:
        figure = {"ratio": row.ratio, "value": row.value, "difference": row.difference}[self.on]
        if figure is None or not math.isfinite(figure):
            return None
        return figure >= self.limit if self.op == ">=" else figure <= self.limit


@dataclass
class Row:
    """One compared figure, where higher_is_better is True when a larger ratio is the better one."""

    name: str
    unit: str
    baseline_name: str
    baseline: float | None
    value: float | None
    higher_is_better: bool = True
    goal: Goal | None = None
    note: str = ""
    # The median of per-round ratios, when runtad and the baseline were measured in
    # pairs: it cancels load that drifts between rounds better than a ratio of medians.
    paired_ratio: float | None = None
    # The median of per-pair differences (runtad minus baseline), for the same reason.
    paired_difference: float | None = None

    @property
    def ratio(self) -> float | None:
        if self.paired_ratio is not None:
            return self.paired_ratio
        if self.baseline is None or self.value is None or self.baseline == 0:
            return None
        return self.value / self.baseline

    @property
    def difference(self) -> float | None:
        if self.paired_difference is not None:
            return self.paired_difference
        if self.baseline is None or self.value is None:
            return None
        return self.value - self.baseline

    @property
    def goal_met(self) -> bool | None:
        return self.goal.is_met(self) if self.goal is not None else None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratio"] = self.ratio
        data["difference"] = self.difference
        data["goal_met"] = self.goal_met
        return data


@dataclass
class PartResult:
    """The outcome of one part: its rows, raw samples, profile findings and notes."""

    part: str
    rows: list[Row] = field(default_factory=list)
    samples: dict[str, Any] = field(default_factory=dict)
    profile: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def has_numbers(self) -> bool:
        """Tell whether at least one row carries a finite runtad figure."""
        return any(row.value is not None and math.isfinite(row.value) for row in self.rows)

    def to_json(self) -> dict[str, Any]:
        return {
            "part": self.part,
            "seconds": round(self.seconds, 2),
            "error": self.error,
            "rows": [row.to_json() for row in self.rows],
            "samples": self.samples,
            "profile": self.profile,
            "notes": self.notes,
        }


def format_number(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def format_goal(row: Row) -> str:
    if row.goal is None:
        return "-"
    met = row.goal_met
    if met is None:
        verdict = "not measured"
    elif met:
        verdict = "met"
    else:
        verdict = "missed"
    if row.goal.on == "difference" and row.difference is not None:
        verdict += f" (difference {format_number(row.difference)} {row.unit})"
    return f"{row.goal.text}: {verdict}"


def render_markdown(result: PartResult) -> str:
    """Render a part's rows as a Markdown table, followed by its notes."""
    lines = [
        f"### {result.part} ({result.seconds:.0f} s)",
        "",
        "| measure | baseline | baseline value | runtad | ratio | goal |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for row in result.rows:
        unit = f" {row.unit}" if row.unit else ""
        paired = " (paired)" if row.paired_ratio is not None else ""
        lines.append(
            f"| {row.name} | {row.baseline_name} | {format_number(row.baseline)}{unit}"
            f" | {format_number(row.value)}{unit} | {format_number(row.ratio)}{paired} | {format_goal(row)} |"
        )
    if result.error:
        lines += ["", f"Error: {result.error}"]
    for note in result.notes:
        lines += ["", f"- {note}"]
    for row in result.rows:
        if row.note:
            lines += [f"- {row.name}: {row.note}"]
    return "\n".join(lines)
