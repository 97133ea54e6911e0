"""The audit settings in runtad.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtad.audit.service import settings_from_config
from runtad.config import Config, ConfigError, load


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "runtad.toml"
    path.write_text(text)
    return path


def test_audit_defaults() -> None:
    settings = settings_from_config(Config())
    assert settings.fold_seconds == 2.0
    assert settings.max_rows == 10_000_000
    assert settings.retention_days == 30
    assert settings.queue_max == 100_000
    assert settings.log_lines is True


def test_audit_settings_from_file(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        "audit_retention_days = 7\naudit_max_rows = 5000\naudit_fold_seconds = 0\n"
        "audit_queue_max = 10\naudit_log_lines = false\n",
    )
    settings = settings_from_config(load(path, {}))
    assert settings.retention_days == 7
    assert settings.max_rows == 5000
    assert settings.fold_seconds == 0.0
    assert settings.queue_max == 10
    assert settings.log_lines is False


@pytest.mark.parametrize(
    "line", ["audit_fold_seconds = -1", "audit_max_rows = 0", "audit_log_lines = 1"]
)
def test_audit_bad_setting_rejected(tmp_path: Path, line: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(write_config(tmp_path, line + "\n"), {})
    assert line.split()[0] in caught.value.message
