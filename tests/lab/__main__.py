"""Command line for demos: start a lab and keep it up, or remove leftovers of crashed runs.

    python -m tests.lab up [--host NAME=ADDRESS[,ADDRESS...]]...
    python -m tests.lab cleanup

``up`` prints the namespace names and the CA path, then waits for Ctrl-C or SIGTERM
and closes the lab.
"""

from __future__ import annotations

import argparse
import ipaddress
import signal
import sys
import threading

from tests.lab.stale import cleanup_stale
from tests.lab.topology import Lab


def _parse_host(text: str) -> tuple[str, list[str], list[str]]:
    name, separator, addresses = text.partition("=")
    if not separator or not name or not addresses:
        raise argparse.ArgumentTypeError(f"expected NAME=ADDRESS[,ADDRESS...], got {text!r}")
    v4: list[str] = []
    v6: list[str] = []
    for address in addresses.split(","):
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"invalid address in {text!r}: {exc}") from exc
        (v4 if parsed.version == 4 else v6).append(str(parsed))
    return name, v4, v6


def _run_up(hosts: list[tuple[str, list[str], list[str]]]) -> int:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    with Lab() as lab:
        for name, v4, v6 in hosts:
            lab.add_host(name, v4=v4, v6=v6)
        print(f"host netns: {lab.host_netns}")
        print(f"inet netns: {lab.inet_netns}")
        print(f"DNS server: {lab.dns_address} and {lab.dns_address_v6}")
        print(f"CA certificate: {lab.ca_cert_path}")
        print("press Ctrl-C to close the lab", flush=True)
        stop.wait()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.lab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start a lab and keep it up until interrupted")
    up.add_argument(
        "--host",
        type=_parse_host,
        action="append",
        default=[],
        help="NAME=ADDRESS[,ADDRESS...]: DNS records and web servers for NAME; repeatable",
    )
    commands.add_parser("cleanup", help="delete rtl-* namespaces no running lab owns")
    args = parser.parse_args(argv)

    if args.command == "cleanup":
        for netns in cleanup_stale():
            print(f"deleted {netns}")
        return 0
    return _run_up(args.host)


if __name__ == "__main__":
    sys.exit(main())
