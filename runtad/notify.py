"""The sd_notify(3) protocol: state changes sent to systemd as datagrams on $NOTIFY_SOCKET.

The message is newline-separated KEY=VALUE lines such as READY=1 or STOPPING=1. A path
starting with "@" names a socket in the abstract namespace. Without $NOTIFY_SOCKET, as
outside a Type=notify service, notify sends nothing.
"""

from __future__ import annotations

import os
import socket
import time

import structlog

log = structlog.get_logger()

SOCKET_ENV = "NOTIFY_SOCKET"


def notify(*fields: str) -> bool:
    """Send KEY=VALUE fields to the service manager and return True.

    Returns False when $NOTIFY_SOCKET is unset. Raises OSError when the socket is set but
    the datagram could not be sent.
    """
    path = os.environ.get(SOCKET_ENV, "")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(address)
        sock.sendall("\n".join(fields).encode())
    return True


def reloading_fields() -> tuple[str, str]:
    """Return RELOADING=1 with the monotonic timestamp that systemd 253 and later expect."""
    return "RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"


def tell_systemd(*fields: str) -> None:
    """Send fields like notify, logging a failure instead of raising: runtad runs on."""
    try:
        notify(*fields)
    except OSError as error:
        log.warning("systemd_notify_failed", fields=list(fields), error=str(error))
