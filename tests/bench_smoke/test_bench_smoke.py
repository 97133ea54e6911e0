"""The benchmark suite in --smoke mode: every part still runs and still produces its figures."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.parts import available_parts

REPO_ROOT = Path(__file__).resolve().parents[2]
# Every part has a smoke budget of at most 90 s; this bounds the whole run.
SMOKE_TIMEOUT = 600

pytestmark = [pytest.mark.slow, pytest.mark.root, pytest.mark.timeout(SMOKE_TIMEOUT + 60)]


@pytest.fixture(scope="module")
def smoke_report() -> dict[str, Any]:
    if os.geteuid() != 0:
        pytest.skip("the benchmarks need root for network namespaces and nftables")
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--json"],
        capture_output=True, text=True, timeout=SMOKE_TIMEOUT, cwd=REPO_ROOT, check=False,
    )
    assert completed.stdout, f"python -m bench --smoke --json printed nothing; stderr:\n{completed.stderr[-3000:]}"
    report: dict[str, Any] = json.loads(completed.stdout)
    report["exit_status"] = completed.returncode
    report["stderr"] = completed.stderr
    return report


def part_named(report: dict[str, Any], name: str) -> dict[str, Any]:
    found = [part for part in report["parts"] if part["part"] == name]
    assert found, f"part {name} is missing from the report"
    return found[0]


def test_smoke_exit_status(smoke_report: dict[str, Any]) -> None:
    assert smoke_report["exit_status"] == 0, smoke_report["stderr"][-3000:]


def test_smoke_runs_every_part(smoke_report: dict[str, Any]) -> None:
    assert [part["part"] for part in smoke_report["parts"]] == list(available_parts())


@pytest.mark.parametrize("name", list(available_parts()))
def test_smoke_part_without_error(smoke_report: dict[str, Any], name: str) -> None:
    assert part_named(smoke_report, name)["error"] is None


@pytest.mark.parametrize("name", list(available_parts()))
def test_smoke_part_has_numbers(smoke_report: dict[str, Any], name: str) -> None:
    values = [row["value"] for row in part_named(smoke_report, name)["rows"]]
    assert any(value is not None and math.isfinite(value) for value in values), values


@pytest.mark.parametrize("name", list(available_parts()))
def test_smoke_part_has_baselines(smoke_report: dict[str, Any], name: str) -> None:
    ratios = [row["ratio"] for row in part_named(smoke_report, name)["rows"]]
    assert any(ratio is not None and math.isfinite(ratio) for ratio in ratios), ratios


def test_smoke_records_machine(smoke_report: dict[str, Any]) -> None:
    assert smoke_report["machine"]["cpus"] >= 1
