"""Handlers of the runta subcommands: one function per command, called with the client.

Each handler prints its result and returns the exit status. Errors propagate as
exceptions, which runta.cli.main turns into messages and exit statuses.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Callable
from typing import Any

from runta import cli_output
from runta.cli_events import list_audits, list_events, open_event_source, watch_events
from runta.cli_exec import ExecSetupError, build_exec_argv, resolve_user
from runta.cli_output import (
    RUNTIME_HEADERS,
    egress_summary,
    egress_table,
    inspect_summary,
    inspect_warning,
    render_table,
    runtime_rows,
    runtime_summary,
    unresolved_warning,
)
from runta.client import Runta
from runta.models import Egress

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE from sysexits.h
EXIT_INTERRUPTED = 130

Handler = Callable[[Runta, argparse.Namespace], int]


def print_json(document: Any) -> None:
    print(json.dumps(document, indent=2))


def warn(message: str) -> None:
    print(f"runta: warning: {message}", file=sys.stderr)


# Sandbox commands.


def run_sandbox_create(client: Runta, args: argparse.Namespace) -> int:
    runtime = client.runtimes.create(args.name, netns=args.netns)
    if args.json:
        print_json(runtime.to_json())
    else:
        print(runtime_summary(runtime))
    return EXIT_OK


def run_sandbox_list(client: Runta, args: argparse.Namespace) -> int:
    runtimes = client.runtimes.list()
    if args.json:
        print_json({"items": [runtime.to_json() for runtime in runtimes]})
    else:
        print(render_table(RUNTIME_HEADERS, runtime_rows(runtimes)))
    return EXIT_OK


def run_sandbox_delete(client: Runta, args: argparse.Namespace) -> int:
    client.runtimes.delete(args.name)
    if args.json:
        # runtad responds 204 without a body, so an empty object keeps the output one document.
        print_json({})
    else:
        print(f"{args.name}: deleted")
    return EXIT_OK


def run_sandbox_exec(client: Runta, args: argparse.Namespace) -> int:
    runtime = client.runtimes.get(args.name)
    user = resolve_user(args.user) if args.user is not None else None
    argv = build_exec_argv(runtime.netns, args.command, user, host_root=args.host_root)
    if args.dry_run:
        print(json.dumps(argv) if args.json else shlex.join(argv))
        return EXIT_OK

    if os.geteuid() != 0:
        raise ExecSetupError(
            "runta sandbox exec must run as root, because entering a network namespace "
            "needs CAP_SYS_ADMIN: run it with sudo"
        )
    client.close()
    sys.stdout.flush()
    os.execv(argv[0], argv)


# Egress commands.


def report_egress(runtime: str, egress: Egress, as_json: bool, table: bool = False) -> int:
    if as_json:
        print_json(egress.to_json())
    elif table:
        # Looked up through the module so that tests can fix the clock.
        print(egress_table(egress, cli_output.utc_now()))
    else:
        print(egress_summary(runtime, egress))

    warning = unresolved_warning(runtime, egress)
    if warning is not None and not as_json:
        warn(warning)
    return EXIT_OK


def run_egress_allow(client: Runta, args: argparse.Namespace) -> int:
    egress = client.runtimes.egress(args.sandbox).allow(
        args.hosts, force=args.force, if_version=args.if_version, normalize=False
    )
    return report_egress(args.sandbox, egress, args.json)


def run_egress_remove(client: Runta, args: argparse.Namespace) -> int:
    egress = client.runtimes.egress(args.sandbox).remove(
        args.hosts, if_version=args.if_version, normalize=False
    )
    return report_egress(args.sandbox, egress, args.json)


def run_egress_enable(client: Runta, args: argparse.Namespace) -> int:
    egress = client.runtimes.egress(args.sandbox).enable(if_version=args.if_version)
    return report_egress(args.sandbox, egress, args.json)


def run_egress_disable(client: Runta, args: argparse.Namespace) -> int:
    egress = client.runtimes.egress(args.sandbox).disable(if_version=args.if_version)
    return report_egress(args.sandbox, egress, args.json)


def run_egress_table(client: Runta, args: argparse.Namespace) -> int:
    egress = client.runtimes.egress(args.sandbox).table()
    return report_egress(args.sandbox, egress, args.json, table=True)


def run_egress_inspect(client: Runta, args: argparse.Namespace) -> int:
    egress_policy = client.runtimes.egress(args.sandbox)
    if args.mode is None:
        if args.if_version is not None:
            print(
                "runta: error: --if-version applies only when setting a mode: "
                f"run 'runta egress inspect {args.sandbox} MODE --if-version {args.if_version}'",
                file=sys.stderr,
            )
            return EXIT_USAGE
        egress = egress_policy.table()
    else:
        egress = egress_policy.patch_policy(inspect=args.mode, if_version=args.if_version)

    if args.json:
        print_json(egress.to_json())
        return EXIT_OK
    print(inspect_summary(args.sandbox, egress))
    warning = inspect_warning(args.sandbox, egress)
    if warning is not None and args.mode is not None:
        warn(warning)
    return EXIT_OK


def run_egress_events(client: Runta, args: argparse.Namespace) -> int:
    if args.sandbox and args.sandbox_name and args.sandbox != args.sandbox_name:
        print(
            f"runta: error: two sandboxes given ({args.sandbox_name!r} and --sandbox {args.sandbox!r}):"
            " name one",
            file=sys.stderr,
        )
        return EXIT_USAGE
    source = open_event_source(client, args.sandbox or args.sandbox_name, args.limit)
    if not args.watch:
        list_events(source, args.json)
        return EXIT_OK
    try:
        watch_events(source, args.limit, args.json, args.interval)
    except KeyboardInterrupt:
        pass
    return EXIT_OK


# Other commands.


def run_audits_list(client: Runta, args: argparse.Namespace) -> int:
    list_audits(client, args.runtime, args.category, args.limit, args.json)
    return EXIT_OK


def run_status(client: Runta, args: argparse.Namespace) -> int:
    status = client.status()
    if args.json:
        print_json(status.to_json())
        return EXIT_OK
    print(f"runtad {status.version} on {client.socket_path}")
    print(f"uptime: {status.uptime_seconds:.0f} s, sandboxes: {status.runtimes}")
    print(f"upstream DNS: {', '.join(status.upstream_dns) or '-'}")
    return EXIT_OK
