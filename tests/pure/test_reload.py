"""SIGHUP reload: apply run-time settings, keep the rest, reject an invalid file whole."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from structlog.testing import capture_logs

from runtad import config as config_module
from runtad import logsetup, metrics
from runtad.manager import Manager
from runtad.reload import Reloader, ReloadOutcome
from runtad.upstream import Upstream


@dataclass
class FakeProxy:
    upstream: Upstream


@dataclass
class FakeSandbox:
    upstream: Upstream
    proxy: FakeProxy | None


@dataclass
class FakeManager:
    config: config_module.Config
    upstream: Upstream
    sandboxes: dict[str, FakeSandbox] = field(default_factory=dict)


def running(tmp_path: Path, text: str) -> tuple[FakeManager, Reloader, Path]:
    path = tmp_path / "runtad.toml"
    path.write_text(text)
    config = config_module.load(path, {})
    upstream = Upstream.from_texts(config.upstream_dns, config.upstream_timeout)
    manager = FakeManager(config, upstream)
    manager.sandboxes["worker"] = FakeSandbox(upstream, FakeProxy(upstream))
    manager.sandboxes["starting"] = FakeSandbox(upstream, None)
    return manager, Reloader(cast(Manager, manager), path, {}), path


def reload(reloader: Reloader) -> tuple[ReloadOutcome, list[MutableMapping[str, Any]]]:
    with capture_logs() as events:
        outcome = asyncio.run(reloader.reload())
    return outcome, events


BASE = 'upstream_dns = ["198.51.100.53"]\nmin_ttl = 30\n'


def test_reload_applies_ttl_bounds(tmp_path: Path) -> None:
    manager, reloader, path = running(tmp_path, BASE)
    config = manager.config
    path.write_text('upstream_dns = ["198.51.100.53"]\nmin_ttl = 60\nmax_ttl = 600\n')
    outcome, events = reload(reloader)
    assert outcome.result == "applied"
    assert outcome.applied == ["max_ttl", "min_ttl"]
    assert manager.config is config
    assert (config.min_ttl, config.max_ttl) == (60, 600)
    reloaded = [event for event in events if event["event"] == "config_reloaded"]
    assert reloaded[0]["changed"]["min_ttl"] == [30, 60]


def test_reload_replaces_upstream_everywhere(tmp_path: Path) -> None:
    manager, reloader, path = running(tmp_path, BASE)
    path.write_text('upstream_dns = ["203.0.113.53:5353"]\n')
    reload(reloader)
    expected = (("203.0.113.53", 5353),)
    assert manager.upstream.servers == expected
    assert manager.sandboxes["worker"].upstream.servers == expected
    proxy = manager.sandboxes["worker"].proxy
    assert proxy is not None
    assert proxy.upstream.servers == expected
    assert manager.sandboxes["starting"].upstream.servers == expected


def test_reload_rejects_invalid_file(tmp_path: Path) -> None:
    manager, reloader, path = running(tmp_path, BASE)
    path.write_text('upstream_dns = ["203.0.113.53"]\nmin_ttl = 0\n')
    before = metrics.counter_value(metrics.CONFIG_RELOADS, result="rejected")
    outcome, events = reload(reloader)
    assert outcome.result == "rejected"
    assert outcome.error is not None and "min_ttl=0" in outcome.error
    assert manager.config.min_ttl == 30
    assert manager.upstream.servers == (("198.51.100.53", 53),)
    assert [event["event"] for event in events] == ["config_reload_rejected"]
    assert metrics.counter_value(metrics.CONFIG_RELOADS, result="rejected") == before + 1


def test_reload_rejects_unknown_key(tmp_path: Path) -> None:
    _, reloader, path = running(tmp_path, BASE)
    path.write_text(BASE + "min_tll = 60\n")
    outcome, _ = reload(reloader)
    assert outcome.result == "rejected"
    assert outcome.error is not None and "min_tll" in outcome.error


def test_reload_keeps_restart_settings(tmp_path: Path) -> None:
    manager, reloader, path = running(tmp_path, BASE)
    path.write_text(BASE + 'netns_prefix = "rt-"\ndns_listen_port = 5353\n')
    outcome, events = reload(reloader)
    assert outcome.result == "applied"
    assert outcome.needs_restart == ["dns_listen_port", "netns_prefix"]
    assert manager.config.netns_prefix == "runta-"
    assert manager.config.dns_listen_port == 53
    warnings = [event for event in events if event["event"] == "config_change_needs_restart"]
    assert warnings[0]["settings"] == ["dns_listen_port", "netns_prefix"]


def test_reload_keeps_command_line_overrides(tmp_path: Path) -> None:
    manager, reloader, path = running(tmp_path, BASE)
    reloader.overrides = {"upstream_dns": ["198.51.100.53"]}
    path.write_text('upstream_dns = ["203.0.113.53"]\n')
    reload(reloader)
    assert manager.upstream.servers == (("198.51.100.53", 53),)


def test_reload_sets_log_level(tmp_path: Path) -> None:
    _, reloader, path = running(tmp_path, BASE)
    logsetup.set_log_level("info")
    path.write_text(BASE + 'log_level = "debug"\n')
    try:
        outcome, _ = reload(reloader)
        assert outcome.applied == ["log_level"]
        assert logsetup._threshold == logging.DEBUG
    finally:
        logsetup.set_log_level("info")


def test_reload_notifies_systemd(tmp_path: Path, monkeypatch: Any) -> None:
    import socket

    notify_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(str(notify_path))
        receiver.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", str(notify_path))
        _, reloader, _ = running(tmp_path, BASE)
        reload(reloader)
        first = receiver.recv(4096).decode().splitlines()
        second = receiver.recv(4096).decode().splitlines()
    assert first[0] == "RELOADING=1"
    assert first[1].startswith("MONOTONIC_USEC=")
    assert second == ["READY=1"]
