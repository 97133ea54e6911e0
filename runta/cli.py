"""The ``runta`` command: sandboxes, egress policies and audits through the runtad API.

Host entries go to runtad exactly as typed, without URL normalisation, so that runtad's
error names the bare host to use. Exit status: 0 success, 1 API or user error, 2 usage
error, 69 (EX_UNAVAILABLE) runtad not reachable.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from runta._http import Transport
from runta._stdlib_transport import StdlibTransport
from runta._version import __version__
from runta.cli_commands import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    Handler,
    run_audits_list,
    run_egress_allow,
    run_egress_disable,
    run_egress_enable,
    run_egress_events,
    run_egress_inspect,
    run_egress_remove,
    run_egress_table,
    run_sandbox_create,
    run_sandbox_delete,
    run_sandbox_exec,
    run_sandbox_list,
)
from runta.cli_exec import ExecSetupError
from runta.cli_status import show_status
from runta.client import Runta
from runta.errors import DaemonUnavailableError, RuntaError
from runta.models import INSPECT_MODES


class CliRunta(Runta):
    """The SDK client on the standard-library transport, which loads faster than httpx."""

    @staticmethod
    def _open_transport(socket_path: str, timeout: float) -> Transport:
        return StdlibTransport(socket_path, timeout)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def common_options() -> argparse.ArgumentParser:
    """Options every subcommand takes, also after its positionals.

    Their default is SUPPRESS so that a value given before the subcommand survives.
    """
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS,
        help="print the API's JSON document instead of text",
    )
    parent.add_argument(
        "--socket", metavar="PATH", default=argparse.SUPPRESS,
        help="runtad socket (default: $RUNTA_SOCKET, else /run/runta/runtad.sock)",
    )
    return parent


def add_command(
    group: Any, name: str, handler: Handler, help_text: str, parent: argparse.ArgumentParser
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = group.add_parser(
        name, parents=[parent], help=help_text, description=help_text
    )
    parser.set_defaults(handler=handler)
    return parser


def add_if_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--if-version", type=int, metavar="N",
        help="apply only if the policy version is still N (sends If-Match)",
    )


def add_sandbox_commands(commands: Any, parent: argparse.ArgumentParser) -> None:
    sandbox = commands.add_parser("sandbox", help="create, list, delete and enter sandboxes")
    group = sandbox.add_subparsers(dest="command_name", metavar="COMMAND", required=True)

    create = add_command(group, "create", run_sandbox_create, "create or adopt a sandbox", parent)
    create.add_argument("name", metavar="NAME")
    create.add_argument(
        "--netns", metavar="NAME_OR_PATH",
        help="adopt this existing network namespace instead of creating one",
    )

    add_command(group, "list", run_sandbox_list, "list sandboxes", parent)

    delete = add_command(group, "delete", run_sandbox_delete, "delete a sandbox", parent)
    delete.add_argument("name", metavar="NAME")

    run = add_command(
        group, "exec", run_sandbox_exec,
        "run a command in a sandbox's netns without CAP_NET_ADMIN (needs root)", parent,
    )
    run.add_argument("name", metavar="NAME")
    run.add_argument("--user", metavar="USER", help="run the command as this user")
    run.add_argument(
        "--host-root", action="store_true",
        help="run as the host's root (without CAP_NET_ADMIN); such a process can still change"
        " the sandbox's enforcement, for example through its net sysctls or runtad's state file",
    )
    run.add_argument("--dry-run", action="store_true", help="print the command line, run nothing")
    run.add_argument("command", nargs="+", metavar="CMD", help="the command, after --")


def add_egress_commands(commands: Any, parent: argparse.ArgumentParser) -> None:
    egress = commands.add_parser("egress", help="manage a sandbox's egress allowlist")
    group = egress.add_subparsers(dest="command_name", metavar="COMMAND", required=True)

    allow = add_command(group, "allow", run_egress_allow, "add host names to the allowlist", parent)
    allow.add_argument("sandbox", metavar="SANDBOX")
    allow.add_argument("hosts", nargs="+", metavar="HOST", help="host name or *.domain wildcard")
    allow.add_argument(
        "--force", action="store_true", help="allow a wildcard over a public suffix (*.com)"
    )
    add_if_version(allow)

    remove = add_command(
        group, "remove", run_egress_remove, "remove host names from the allowlist", parent
    )
    remove.add_argument("sandbox", metavar="SANDBOX")
    remove.add_argument("hosts", nargs="+", metavar="HOST")
    add_if_version(remove)

    for name, handler, help_text in (
        ("enable", run_egress_enable, "turn enforcement on"),
        ("disable", run_egress_disable, "turn enforcement off"),
    ):
        switch = add_command(group, name, handler, help_text, parent)
        switch.add_argument("sandbox", metavar="SANDBOX")
        add_if_version(switch)

    table = add_command(
        group, "table", run_egress_table, "show the policy with addresses and expiries", parent
    )
    table.add_argument("sandbox", metavar="SANDBOX")

    inspect = add_command(
        group, "inspect", run_egress_inspect,
        "show or set which TCP 80/443 connections the egress gateway checks", parent,
    )
    inspect.add_argument("sandbox", metavar="SANDBOX")
    inspect.add_argument(
        "mode", nargs="?", choices=INSPECT_MODES, metavar="MODE",
        help="'first' (the default) checks connections to addresses outside the allowed sets "
        "and adds the address of each allowed one to the sets; 'all' (strict) checks every "
        "connection and adds no address. Without MODE, print the current mode",
    )
    add_if_version(inspect)

    events = add_command(group, "events", run_egress_events, "list egress audit events", parent)
    events.add_argument(
        "sandbox_name", nargs="?", metavar="SANDBOX",
        help="only this sandbox (default: all), like the other egress commands",
    )
    events.add_argument("--sandbox", metavar="SANDBOX", help="only this sandbox, the same as SANDBOX")
    events.add_argument("--limit", type=positive_int, metavar="N", help="events per page")
    events.add_argument("--watch", action="store_true", help="keep printing new events")
    events.add_argument(
        "--interval", type=positive_seconds, default=2.0, metavar="SECONDS",
        help="seconds between polls with --watch (default: 2)",
    )


def add_other_commands(commands: Any, parent: argparse.ArgumentParser) -> None:
    audits = commands.add_parser("audits", help="list audit records")
    group = audits.add_subparsers(dest="command_name", metavar="COMMAND", required=True)
    listing = add_command(group, "list", run_audits_list, "list audit records", parent)
    listing.add_argument("--runtime", metavar="SANDBOX", help="only this sandbox")
    listing.add_argument("--category", metavar="CATEGORY", help="only this category (egress, ...)")
    listing.add_argument("--limit", type=positive_int, metavar="N", help="records per page")

    add_command(
        commands, "status", show_status,
        "show runtad's version, uptime, sandboxes, last reconcile and dropped events", parent,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runta", description="Manage sandboxes and their egress allowlists through runtad."
    )
    parser.add_argument("--version", action="version", version=f"runta {__version__}")
    parser.add_argument(
        "--socket", metavar="PATH",
        help="runtad socket (default: $RUNTA_SOCKET, else /run/runta/runtad.sock)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the API's JSON document instead of text"
    )

    parent = common_options()
    commands = parser.add_subparsers(dest="group_name", metavar="COMMAND", required=True)
    add_sandbox_commands(commands, parent)
    add_egress_commands(commands, parent)
    add_other_commands(commands, parent)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        # argparse exits 2 on usage errors and 0 for --help and --version.
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE

    try:
        with CliRunta(args.socket) as client:
            handler: Handler = args.handler
            return handler(client, args)
    except BrokenPipeError:
        # The reader went away (runta ... | head): stop quietly, as other tools do.
        _silence_stdout()
        return EXIT_OK
    except DaemonUnavailableError as exc:
        print(f"runta: error: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except (RuntaError, ExecSetupError) as exc:
        print(f"runta: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush raises no second error."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
