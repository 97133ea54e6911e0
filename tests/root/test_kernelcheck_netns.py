"""The kernel checks in real scratch namespaces: all pass here; a refused batch is reported."""

from __future__ import annotations

import subprocess
import sys

import pytest

from runtad import kernelcheck
from runtad.config import Config

pytestmark = pytest.mark.root


def scratch_namespaces() -> set[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {
        line.split()[0] for line in listing.stdout.splitlines() if line.startswith("runta-check-")
    }


def test_every_feature_present() -> None:
    checks = kernelcheck.check_kernel(Config())
    assert [check.feature for check in checks if not check.ok] == []
    assert {
        "set with timeouts",
        "nat output hook (DNS redirect)",
        "sandbox ruleset",
        "conntrack netlink",
    } <= {check.feature for check in checks}


def test_refused_batch_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    bogus = [
        {
            "add": {
                "set": {
                    "family": "inet",
                    "table": "runta_check",
                    "name": "s",
                    "type": "no_such_type",
                }
            }
        }
    ]
    monkeypatch.setattr(
        kernelcheck,
        "_probes",
        lambda config: [
            ("nftables inet table", [{"add": {"table": kernelcheck.CHECK_TABLE}}]),
            ("a feature this kernel lacks", bogus),
        ],
    )
    checks = kernelcheck.check_kernel(Config())
    failed = [check for check in checks if not check.ok]
    assert [check.feature for check in failed] == ["a feature this kernel lacks"]
    assert "no_such_type" in failed[0].detail or "Error" in failed[0].detail


def test_scratch_namespace_removed() -> None:
    before = scratch_namespaces()
    kernelcheck.check_kernel(Config())
    assert scratch_namespaces() == before


def test_check_command_exit_status() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "runtad", "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "ok      sandbox ruleset" in completed.stdout.splitlines()
