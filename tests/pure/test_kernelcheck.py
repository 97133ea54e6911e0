"""The start-up kernel checks: the refusal names the missing feature; the output is plain."""

from __future__ import annotations

import pytest

from runtad.kernelcheck import (
    KernelCheck,
    KernelFeatureMissing,
    format_checks,
    require_kernel_features,
)


def test_all_ok_passes() -> None:
    require_kernel_features(
        [KernelCheck("set with timeouts", True), KernelCheck("conntrack netlink", True)]
    )


def test_missing_feature_named() -> None:
    checks = [
        KernelCheck("nftables inet table", True),
        KernelCheck(
            "set with timeouts", False, "Error: Could not process rule: Operation not supported"
        ),
    ]
    with pytest.raises(KernelFeatureMissing) as raised:
        require_kernel_features(checks)
    assert "set with timeouts: Error: Could not process rule" in raised.value.message
    assert "runtad --check" in raised.value.message
    assert raised.value.failed == [checks[1]]


def test_format_marks_missing() -> None:
    text = format_checks(
        [KernelCheck("nftables inet table", True), KernelCheck("NFLOG (log group)", False, "no")]
    )
    assert text.splitlines() == ["ok      nftables inet table", "MISSING NFLOG (log group): no"]
