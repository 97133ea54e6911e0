"""Small statistics over samples: median and percentiles by linear interpolation."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Return the fraction-th percentile (0.5 is the median) of samples, interpolated."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = math.ceil(position)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(samples: Sequence[float]) -> float:
    return percentile(samples, 0.5)


def paired_ratio(values: Sequence[float], baselines: Sequence[float]) -> float | None:
    """Return the median of value / baseline over rounds measured in pairs, or None without pairs."""
    ratios = [value / baseline for value, baseline in zip(values, baselines) if baseline]
    return median(ratios) if ratios else None


def spread(samples: Sequence[float]) -> dict[str, float]:
    """Return min, median and max of samples, for the JSON record of repeated runs."""
    if not samples:
        return {"min": math.nan, "median": math.nan, "max": math.nan}
    return {"min": min(samples), "median": median(samples), "max": max(samples)}
