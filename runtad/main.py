"""runtad's entry point: read the settings, reconcile every sandbox, serve the API."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from . import __version__, metrics
from . import config as config_module
from .api import KERNEL_CHECKS_KEY, Access, build_app, build_metrics_app, prepare_socket_path, socket_group_id
from .api_audits import add_audit_routes
from .audit import AuditService
from .errors import RuntadError
from .heartbeat import Heartbeat
from .kernelcheck import check_kernel, format_checks, require_kernel_features
from .lowfds import RESERVE
from .logsetup import configure_logging, set_log_level
from .manager import Manager
from .notify import tell_systemd
from .reload import Reloader, build_upstream
from .store import Store

log = structlog.get_logger()


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="runtad", description="Per-sandbox egress enforcement daemon.")
    parser.add_argument("--config", type=Path, help="settings file (default /etc/runta/runtad.toml)")
    parser.add_argument("--state-dir", type=Path, help="directory of the state database (default /var/lib/runta)")
    parser.add_argument("--socket", type=Path, help="API unix socket path (default /run/runta/runtad.sock)")
    parser.add_argument(
        "--upstream-dns", action="append", metavar="ADDR[:PORT]",
        help="upstream name server; repeat for more (default: the name servers of /etc/resolv.conf)",
    )
    parser.add_argument(
        "--log-level", choices=config_module.LOG_LEVELS,
        help="lowest level logged; overrides log_level of the settings file (default info)",
    )
    parser.add_argument(
        "--check", action="store_true",
        help="check that the kernel has the netfilter features enforcement needs, print them and exit",
    )
    parser.add_argument("--version", action="version", version=f"runtad {__version__}")
    return parser.parse_args(argv)


def raise_open_file_limit() -> None:
    """Raise the soft limit on open files to the hard limit.

    Each connection through the gateway holds six descriptors (two sockets, two pipes),
    so the common soft limit of 1024 would cap a host at about 170 such connections.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # An unlimited hard limit still stops at fs.nr_open, 1048576 by default.
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        log.info("open_file_limit_raised", soft=soft, limit=target)


async def serve(config: config_module.Config, config_path: Path | None, overrides: dict[str, Any]) -> None:
    started = time.monotonic()
    metrics.record_start(__version__)
    raise_open_file_limit()
    # Before any sandbox is touched: a kernel without a needed feature stops runtad here.
    kernel_checks = await asyncio.to_thread(check_kernel, config)
    require_kernel_features(kernel_checks)
    # Before any socket: libnftables contexts need descriptors below 1024 (lowfds.py).
    reserved = RESERVE.fill()
    log.info("low_descriptors_reserved", count=reserved)
    upstream, upstream_texts = build_upstream(config)
    store = Store(config.state_dir / "runtad.db")
    # Started before any sandbox, so that the first DNS query and kernel event are kept.
    audit = AuditService.from_config(config)
    audit.start()
    manager = Manager(config, store, upstream, audit)
    reloader = Reloader(manager, config_path, overrides)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # SIGHUP would end the process by default: ignore it until the daemon serves.
    loop.add_signal_handler(signal.SIGHUP, lambda: log.warning("config_reload_ignored", reason="starting"))

    heartbeat = Heartbeat(config.state_dir / "heartbeat.json")
    downtime = heartbeat.previous_downtime()

    # The policy is in the kernel and the DNS listeners serve it before the API opens.
    reconcile_started = time.monotonic()
    await manager.reconcile_all()
    heartbeat.start()
    if downtime is not None:
        manager.record_downtime(downtime)
    metrics.record_reconcile(time.monotonic() - reconcile_started)
    metrics.watch_sandboxes(lambda: manager.sandboxes)

    access = Access(socket_group_id(config.socket_group), manager.sandbox_of_netns)
    app = build_app(manager, access, started=started, reloader=reloader)
    app[KERNEL_CHECKS_KEY] = kernel_checks
    add_audit_routes(app, audit)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    socket_path = str(config.socket_path)
    prepare_socket_path(socket_path)
    site = web.UnixSite(runner, socket_path)
    await site.start()
    os.chown(socket_path, 0, access.gid if access.gid is not None else 0)
    os.chmod(socket_path, 0o660)
    metrics_runner = await start_metrics_listener(config.metrics_listen)

    loop.add_signal_handler(signal.SIGHUP, reloader.request)
    # What start-up built lives as long as the daemon: keep it out of the collector's
    # full passes, which otherwise walk every sandbox's objects during a large write.
    gc.freeze()
    tell_systemd("READY=1", f"STATUS=serving {len(manager.sandboxes)} sandboxes")
    log.info(
        "runtad_started", version=__version__, socket=socket_path, state_dir=str(config.state_dir),
        upstream=upstream_texts, runtimes=len(manager.sandboxes),
        metrics_listen=config.metrics_listen or None,
    )

    await stop.wait()
    tell_systemd("STOPPING=1")
    log.info("runtad_stopping", reason="signal")
    if metrics_runner is not None:
        await metrics_runner.cleanup()
    await runner.cleanup()
    await manager.shutdown()
    await heartbeat.stop()
    # After the sandboxes stop, so that their last events are written too.
    await audit.close()
    store.close()
    log.info("runtad_stopped", enforcement="left in the kernel")


async def start_metrics_listener(address: str) -> web.AppRunner | None:
    """Serve GET /metrics on a TCP address, or return None when none is configured."""
    if not address:
        return None
    host, port = config_module.parse_listen_address(address)
    runner = web.AppRunner(build_metrics_app(), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as error:
        await runner.cleanup()
        raise config_module.ConfigError(
            f"cannot listen for metrics on {address}: {error.strerror};"
            " pick a free port in metrics_listen or set it to \"\""
        ) from None
    return runner


def run_check(config: config_module.Config) -> int:
    """Print the kernel feature checks; exit status 0 when every one passed."""
    checks = check_kernel(config)
    print(format_checks(checks))
    return 0 if all(check.ok for check in checks) else 1


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    configure_logging(arguments.log_level or "info")
    overrides = {
        "state_dir": arguments.state_dir,
        "socket_path": arguments.socket,
        "upstream_dns": arguments.upstream_dns,
        "log_level": arguments.log_level,
    }
    try:
        config = config_module.load(arguments.config, overrides)
        set_log_level(config.log_level)
        if arguments.check:
            return run_check(config)
        asyncio.run(serve(config, arguments.config, overrides))
    except RuntadError as error:
        log.error("runtad_failed", error=error.message)
        return 1
    except KeyboardInterrupt:
        return 130
    exit_after_clean_stop()
    return 0


def exit_after_clean_stop() -> None:
    """End the process at once after serve() returned: every sandbox stopped, audit written, store closed.

    What is left is freeing the heap object by object, about a second at 1,000 sandboxes,
    and joining idle worker threads. Only the log lines still buffered in the standard
    streams need writing first.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # closed or broken: nothing more can be written to it
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
