"""The policy's gateway inspection mode in the state database, new and migrated."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from runtad.config import Config, ConfigError
from runtad.store import Store

OLD_POLICIES = """
CREATE TABLE runtimes (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, netns TEXT NOT NULL,
    adopted INTEGER NOT NULL, slot INTEGER, host_interface TEXT, created_at TEXT NOT NULL
);
CREATE TABLE policies (
    runtime_id INTEGER PRIMARY KEY REFERENCES runtimes (id) ON DELETE CASCADE,
    enabled INTEGER NOT NULL, hosts TEXT NOT NULL, version INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);
INSERT INTO runtimes VALUES (1, 'worker', '/run/netns/w', 1, NULL, NULL, '2026-12-04T20:00:00.000Z');
INSERT INTO policies VALUES (1, 1, '["pypi.org"]', 3, '2026-12-04T20:00:00.000Z');
"""


def test_new_policy_inspects_first(tmp_path: Path) -> None:
    store = Store(tmp_path / "runtad.db")
    record = store.create_runtime("worker", "/run/netns/w", True, None, None)
    assert store.get_policy(record.id).inspect == "first"
    store.close()


def test_strict_mode_saved(tmp_path: Path) -> None:
    store = Store(tmp_path / "runtad.db")
    record = store.create_runtime("worker", "/run/netns/w", True, None, None)
    saved = store.save_policy(record, True, ("pypi.org",), 1, "all")
    assert saved.inspect == "all"
    assert store.get_policy(record.id).inspect == "all"
    store.close()


def test_old_database_migrated(tmp_path: Path) -> None:
    path = tmp_path / "runtad.db"
    with sqlite3.connect(path) as connection:
        connection.executescript(OLD_POLICIES)
    store = Store(path)
    policy = store.get_policy(1)
    assert policy.inspect == "first"
    assert policy.hosts == ("pypi.org",)
    assert policy.version == 3
    store.close()


def test_gateway_port_must_differ_from_dns() -> None:
    config = Config(gateway_port=53)
    with pytest.raises(ConfigError, match="gateway_port"):
        config.validate()


def test_gateway_mark_must_be_nonzero() -> None:
    config = Config(gateway_mark=0)
    with pytest.raises(ConfigError, match="gateway_mark"):
        config.validate()
