"""Run the benchmark suite: ``python -m bench [PART ...] [--smoke] [--json] [--output FILE]``.

Parts run one after another, each in namespaces it creates and removes. Progress goes
to stderr; the results (Markdown tables, or JSON with --json) go to stdout. The exit
status is 0 when every part produced its figures, whether or not they met their goals.

The suite as a whole is bounded: each part's time budget is its own BUDGET_SECONDS or
what is left of SUITE_BUDGET_SECONDS, whichever is smaller, and a part is not started
when less than MIN_PART_SECONDS are left. The budgets of the default parts should add
up to SUITE_BUDGET_SECONDS at most, so that every part gets its own.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench.context import BenchContext, BudgetExceededError
from bench.machine import describe_machine, describe_revision
from bench.namespaces import cleanup_stale_bench_netns
from bench.parts import Part, available_parts, load_part
from bench.results import PartResult, render_markdown

# The full suite must end within 15 minutes on a 2-core machine. A minute is kept for
# start-up, teardown after the last budget check, and the report.
SUITE_BUDGET_SECONDS = 14 * 60.0
SMOKE_SUITE_BUDGET_SECONDS = 8 * 60.0
MIN_PART_SECONDS = 10.0


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    names = list(available_parts())
    parser = argparse.ArgumentParser(prog="python -m bench", description="Benchmark runtad against baselines measured in the same run.")
    parser.add_argument("parts", nargs="*", metavar="PART", help=f"parts to run, in order (default: all of {', '.join(names)})")
    parser.add_argument("--smoke", action="store_true", help="run every part tiny (seconds), to check that it still works")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON document instead of tables")
    parser.add_argument("--output", type=Path, metavar="FILE", help="also write the JSON document to FILE")
    arguments = parser.parse_args(argv)
    unknown = [name for name in arguments.parts if name not in names]
    if unknown:
        parser.error(f"unknown part {unknown[0]!r}: choose from {', '.join(names)}")
    arguments.parts = arguments.parts or names
    return arguments


def missing_tools(parts: list[Part]) -> dict[str, list[str]]:
    missing: dict[str, list[str]] = {}
    for part in parts:
        absent = [tool for tool in part.tools if shutil.which(tool) is None]
        if absent:
            missing[part.name] = absent
    return missing


def run_part(part: Part, smoke: bool, work_root: Path, budget: float) -> PartResult:
    work_dir = work_root / part.name
    work_dir.mkdir()
    context = BenchContext(part.name, smoke, work_dir, budget)
    context.log(f"start (budget {context.budget_seconds:.0f} s)")
    try:
        result = part.run(context)
    except BudgetExceededError as error:
        result = PartResult(part.name, error=str(error))
    except Exception as error:  # noqa: BLE001 - one failed part must not stop the others
        traceback.print_exc(file=sys.stderr)
        result = PartResult(part.name, error=f"{type(error).__name__}: {error}")
    result.seconds = time.monotonic() - context.started
    context.log(f"done in {result.seconds:.1f} s")
    return result


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    if os.geteuid() != 0:
        print("python -m bench needs root: it creates network namespaces and nftables tables", file=sys.stderr)
        return 2
    parts = [load_part(name) for name in arguments.parts]
    missing = missing_tools(parts)
    if missing:
        for name, tools in missing.items():
            print(f"part {name} needs {', '.join(tools)} on PATH: install it (apt-get install {' '.join(tools)})", file=sys.stderr)
        return 2

    cleanup_stale_bench_netns()
    started = time.monotonic()
    machine = describe_machine()
    results: list[PartResult] = []
    work_root = Path(tempfile.mkdtemp(prefix="runta-bench-"))
    try:
        suite_budget = SMOKE_SUITE_BUDGET_SECONDS if arguments.smoke else SUITE_BUDGET_SECONDS
        for part in parts:
            remaining = suite_budget - (time.monotonic() - started)
            if remaining < MIN_PART_SECONDS:
                message = f"not run: the suite's bound of {suite_budget:.0f} s left {max(remaining, 0):.0f} s for it"
                results.append(PartResult(part.name, error=message))
                continue
            results.append(run_part(part, arguments.smoke, work_root, min(part.budget(arguments.smoke), remaining)))
    finally:
        shutil.rmtree(work_root, ignore_errors=True)
    document: dict[str, Any] = {
        "command": "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv),
        "smoke": arguments.smoke,
        "revision": describe_revision(),
        "machine": machine,
        "wall_seconds": round(time.monotonic() - started, 1),
        "parts": [result.to_json() for result in results],
    }
    if arguments.output is not None:
        arguments.output.write_text(json.dumps(document, indent=2) + "\n")
    if arguments.json:
        print(json.dumps(document, indent=2))
    else:
        print(render_report(document, results))
    return 0 if all(result.error is None and result.has_numbers() for result in results) else 1


def render_report(document: dict[str, Any], results: list[PartResult]) -> str:
    machine = document["machine"]
    lines = ["## Machine", ""]
    lines += [f"- {key}: {value}" for key, value in machine.items()]
    lines += ["", f"Revision: {document['revision']}", "", f"Wall time: {document['wall_seconds']} s", ""]
    for result in results:
        lines += [render_markdown(result), ""]
        for finding in result.profile:
            lines.append(f"- profile: {finding['share']:.1f}% {finding['kind']} {finding['frame']}")
        if result.profile:
            lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
