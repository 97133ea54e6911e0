"""Configuration reload on SIGHUP: re-read the file and apply what can change at run time.

A reload never touches the kernel: rulesets and sets stay as they are, so enforcement
continues throughout. An invalid file is rejected whole and the running settings stay.
Settings outside config.RELOADABLE are reported as waiting for a restart.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from . import config as config_module
from . import metrics
from .logsetup import set_log_level
from .manager import Manager
from .notify import reloading_fields, tell_systemd
from .store import utc_now_text
from .upstream import Upstream

log = structlog.get_logger()


@dataclass
class ReloadOutcome:
    at: str
    result: str  # "applied" or "rejected"
    error: str | None = None
    applied: list[str] = field(default_factory=list)
    needs_restart: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at, "result": self.result, "error": self.error,
            "applied": self.applied, "needs_restart": self.needs_restart,
        }


class Reloader:
    """Reload the settings file into a running daemon, one reload at a time."""

    def __init__(self, manager: Manager, path: Path | None, overrides: dict[str, Any]) -> None:
        self.manager = manager
        self.path = path
        # Command-line settings win over the file on every reload, as they did at start.
        self.overrides = overrides
        self.last: ReloadOutcome | None = None
        self._lock = asyncio.Lock()

    def request(self) -> None:
        """Start a reload; the signal handler calls this."""
        asyncio.get_running_loop().create_task(self.reload())

    async def reload(self) -> ReloadOutcome:
        async with self._lock:
            tell_systemd(*reloading_fields())
            try:
                outcome = await self._reload()
            finally:
                tell_systemd("READY=1")
            self.last = outcome
            metrics.CONFIG_RELOADS.labels(result=outcome.result).inc()
            return outcome

    async def _reload(self) -> ReloadOutcome:
        running = self.manager.config
        try:
            new = await asyncio.to_thread(config_module.load, self.path, self.overrides)
            upstream = _build_upstream(new) if _upstream_changed(running, new) else None
        except config_module.ConfigError as error:
            log.error("config_reload_rejected", error=error.message, kept="running settings")
            return ReloadOutcome(utc_now_text(), "rejected", error.message)

        changes = config_module.changed_settings(running, new)
        applied = sorted(name for name in changes if name in config_module.RELOADABLE)
        needs_restart = sorted(name for name in changes if name not in config_module.RELOADABLE)
        for name in applied:
            setattr(running, name, getattr(new, name))
        if "log_level" in applied:
            set_log_level(running.log_level)
        if upstream is not None:
            self._replace_upstream(upstream)

        log.info(
            "config_reloaded",
            changed={name: _as_json(changes[name]) for name in applied},
            upstream=[f"{host}:{port}" for host, port in self.manager.upstream.servers],
        )
        if needs_restart:
            log.warning(
                "config_change_needs_restart", settings=needs_restart,
                action="systemctl restart runtad",
            )
        return ReloadOutcome(utc_now_text(), "applied", None, applied, needs_restart)

    def _replace_upstream(self, upstream: Upstream) -> None:
        # NOTE: a sandbox that is being created while this runs keeps the servers it was
        # built with until the next restart; Manager has no hook to swap them under its lock.
        self.manager.upstream = upstream
        for sandbox in self.manager.sandboxes.values():
            sandbox.upstream = upstream
            if sandbox.proxy is not None:
                sandbox.proxy.upstream = upstream


def build_upstream(config: config_module.Config) -> tuple[Upstream, list[str]]:
    """Return the upstream resolver and the server texts it came from."""
    texts = config.upstream_dns or config_module.read_resolv_conf()
    if not texts:
        raise config_module.ConfigError(
            "no upstream name server: set upstream_dns in the settings file, pass"
            " --upstream-dns ADDR, or list one in /etc/resolv.conf"
        )
    return Upstream.from_texts(texts, config.upstream_timeout), texts


def _build_upstream(config: config_module.Config) -> Upstream:
    return build_upstream(config)[0]


def _upstream_changed(old: config_module.Config, new: config_module.Config) -> bool:
    # An empty upstream_dns means /etc/resolv.conf, whose servers may have changed too.
    return (
        old.upstream_dns != new.upstream_dns
        or old.upstream_timeout != new.upstream_timeout
        or not new.upstream_dns
    )


def _as_json(change: tuple[Any, Any]) -> list[Any]:
    return [str(value) if isinstance(value, Path) else value for value in change]
