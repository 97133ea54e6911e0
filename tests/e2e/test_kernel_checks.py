"""A started runtad reports the kernel checks it passed in GET /v1/status."""

from __future__ import annotations

import pytest

from tests.e2e.runtad_process import RuntadProcess

pytestmark = pytest.mark.root


def test_status_lists_kernel_checks(runtad: RuntadProcess) -> None:
    response = runtad.api("GET", "/status")

    checks = response.json()["kernel_checks"]
    assert response.status_code == 200
    assert {check["feature"] for check in checks} >= {"set with timeouts", "sandbox ruleset", "conntrack netlink"}
    assert all(check["ok"] for check in checks)
