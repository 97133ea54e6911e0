"""`make demo` runs the README's commands and real clients; its own checks must all pass."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_demo_checks_pass() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "scripts.demo"], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=240, check=False,
    )  # fmt: skip

    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "200 from 192.0.2.10" in completed.stdout
    assert "DEMO CHECK FAILED" not in completed.stdout
