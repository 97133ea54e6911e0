"""Short-connection rate: a TCP server that accepts and closes, and a client that connects and resets.

Run as a script inside a namespace (standard library only, so it needs no PYTHONPATH)::

    python bench/connrate.py serve ADDRESS PORT --seconds S
    python bench/connrate.py connect ADDRESS PORT --seconds S --max-connections N

The client closes each connection with an RST (SO_LINGER 0), so no TIME_WAIT state
exhausts its ports during a run. Every connection still completes the three-way
handshake, which is the part of a flow that the ruleset's new-flow rules evaluate. It prints one JSON
object: connections, failures, failure_kinds (errno name → count), seconds, rate.
"""

from __future__ import annotations

import argparse
import errno
import json
import selectors
import socket
import struct
import sys
import time

LINGER_RESET = struct.pack("ii", 1, 0)
CONNECT_TIMEOUT = 2.0


def family_of(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def serve(address: str, port: int, seconds: float) -> None:
    """Accept and close connections until seconds have passed.

    The server closes with a FIN, never an RST: an RST could reach the client before its
    connect() returned and turn a completed handshake into ECONNRESET there.
    """
    listener = socket.socket(family_of(address), socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((address, port))
    listener.listen(4096)
    listener.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not selector.select(timeout=0.5):
            continue
        for _ in range(256):  # drain the accept queue, bounded per wake-up
            try:
                connection, _ = listener.accept()
            except BlockingIOError:
                break
            connection.close()
    listener.close()


def connect(address: str, port: int, seconds: float, max_connections: int) -> dict[str, object]:
    """Open and reset connections one after another for seconds or max_connections."""
    family = family_of(address)
    connections = failures = 0
    failure_kinds: dict[str, int] = {}
    started = time.perf_counter()
    deadline = started + seconds
    while connections + failures < max_connections and time.perf_counter() < deadline:
        client = socket.socket(family, socket.SOCK_STREAM)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        client.settimeout(CONNECT_TIMEOUT)
        try:
            client.connect((address, port))
            connections += 1
        except OSError as error:
            failures += 1
            kind = errno.errorcode.get(error.errno or 0, type(error).__name__)
            failure_kinds[kind] = failure_kinds.get(kind, 0) + 1
        finally:
            client.close()
    elapsed = time.perf_counter() - started
    return {
        "connections": connections, "failures": failures, "failure_kinds": failure_kinds,
        "seconds": elapsed, "rate": connections / elapsed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Measure the TCP short-connection rate between namespaces.")
    parser.add_argument("role", choices=("serve", "connect"))
    parser.add_argument("address")
    parser.add_argument("port", type=int)
    parser.add_argument("--seconds", type=float, required=True, help="how long to run, in seconds")
    parser.add_argument("--max-connections", type=int, default=1_000_000, help="client: stop after this many attempts")
    arguments = parser.parse_args(argv)
    if arguments.role == "serve":
        serve(arguments.address, arguments.port, arguments.seconds)
        return 0
    print(json.dumps(connect(arguments.address, arguments.port, arguments.seconds, arguments.max_connections)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
