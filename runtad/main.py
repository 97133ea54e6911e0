"""runtad's entry point: read the settings, reconcile every sandbox, serve the API."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

import structlog
from aiohttp import web

from . import __version__, config as config_module
from .api import Access, build_app, prepare_socket_path, socket_group_id
from .errors import RuntadError
from .logsetup import configure_logging
from .manager import Manager
from .store import Store
from .upstream import Upstream

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
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--version", action="version", version=f"runtad {__version__}")
    return parser.parse_args(argv)


async def serve(config: config_module.Config) -> None:
    upstream_texts = config.upstream_dns or config_module.read_resolv_conf()
    if not upstream_texts:
        raise config_module.ConfigError(
            "no upstream name server: pass --upstream-dns ADDR or list one in /etc/resolv.conf"
        )
    upstream = Upstream.from_texts(upstream_texts, config.upstream_timeout)
    store = Store(config.state_dir / "runtad.db")
    manager = Manager(config, store, upstream)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    # The policy is in the kernel and the DNS listeners serve it before the API opens.
    await manager.reconcile_all()

    access = Access(socket_group_id(config.socket_group))
    app = build_app(manager, access)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    socket_path = str(config.socket_path)
    prepare_socket_path(socket_path)
    site = web.UnixSite(runner, socket_path)
    await site.start()
    os.chown(socket_path, 0, access.gid if access.gid is not None else 0)
    os.chmod(socket_path, 0o660)
    log.info(
        "runtad_started", version=__version__, socket=socket_path, state_dir=str(config.state_dir),
        upstream=upstream_texts, runtimes=len(manager.sandboxes),
    )

    await stop.wait()
    log.info("runtad_stopping", reason="signal")
    await runner.cleanup()
    await manager.shutdown()
    store.close()
    log.info("runtad_stopped", enforcement="left in the kernel")


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    configure_logging(arguments.log_level)
    try:
        config = config_module.load(
            arguments.config,
            {
                "state_dir": arguments.state_dir,
                "socket_path": arguments.socket,
                "upstream_dns": arguments.upstream_dns,
            },
        )
        asyncio.run(serve(config))
    except RuntadError as error:
        log.error("runtad_failed", error=error.message)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
