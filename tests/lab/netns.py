"""Named network namespaces: commands run inside them, sockets opened inside them.

Two ways to run a command in a namespace, chosen per call:

- ``ip netns exec NAME`` (the default) also gives the command a private mount
  namespace (slave of the caller's) with /sys remounted for the namespace, so tools
  that read /sys/class/net see the namespace's interfaces. Mounts made inside do not
  propagate out.
- ``nsenter --net=/run/netns/NAME`` (``share_mounts=True``) switches only the network
  namespace. Use it for a program that itself runs ``ip netns add`` (runtad creating
  sandboxes): that command bind-mounts /run/netns/NEW, and under ``ip netns exec``
  the mount would stay inside the private mount namespace, invisible to the tests.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

from tests.lab.errors import LabCommandError

NETNS_RUN_DIR = Path("/run/netns")

# From <linux/sched.h>.
CLONE_NEWNET = 0x40000000

_SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
IP = shutil.which("ip", path=_SYSTEM_PATH) or "/usr/sbin/ip"
NSENTER = shutil.which("nsenter", path=_SYSTEM_PATH) or "/usr/bin/nsenter"

_libc = ctypes.CDLL(None, use_errno=True)


def netns_path(netns: str) -> Path:
    return NETNS_RUN_DIR / netns


def netns_argv(netns: str, argv: Sequence[str], *, share_mounts: bool = False) -> list[str]:
    """Build the argv that runs ``argv`` inside ``netns``.

    The tools are given by absolute path so the argv also works with a clean
    environment whose PATH lacks /usr/sbin.
    """
    if share_mounts:
        return [NSENTER, f"--net={netns_path(netns)}", "--", *argv]
    return [IP, "netns", "exec", netns, *argv]


def run_checked(argv: Sequence[str], *, timeout: float = 30.0) -> str:
    """Run a setup command, return its stdout, raise LabCommandError when it fails."""
    completed = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, check=False
    )
    if completed.returncode != 0:
        raise LabCommandError(argv, completed.returncode, completed.stderr)
    return completed.stdout


def list_netns() -> list[str]:
    """Return the names registered under /run/netns."""
    try:
        return sorted(os.listdir(NETNS_RUN_DIR))
    except FileNotFoundError:
        return []


def netns_exists(netns: str) -> bool:
    return netns_path(netns).exists()


def add_netns(netns: str) -> None:
    run_checked([IP, "netns", "add", netns])


def delete_netns(netns: str) -> None:
    """Delete a named namespace. A namespace that is already gone is not an error.

    Deleting the last reference also deletes the namespace's veth ends, which takes
    their peers in other namespaces with them.
    """
    if not netns_exists(netns):
        return
    run_checked([IP, "netns", "delete", netns])


def netns_pids(netns: str) -> list[int]:
    """Return the pids of processes whose network namespace is ``netns``."""
    output = run_checked([IP, "netns", "pids", netns])
    return [int(line) for line in output.split()]


def _enter_netns(netns: str) -> None:
    fd = os.open(netns_path(netns), os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns into {netns} failed: {os.strerror(errno)}")
    finally:
        os.close(fd)


def socket_in_netns(netns: str, family: int, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """Open a socket that lives in ``netns``.

    setns() changes only the calling thread, so a short-lived thread enters the
    namespace, creates the socket and exits. The socket stays bound to the
    namespace it was created in, and the caller's thread never leaves its own.
    """
    created: list[socket.socket] = []
    failures: list[BaseException] = []

    def create() -> None:
        try:
            _enter_netns(netns)
            created.append(socket.socket(family, kind))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
            failures.append(exc)

    thread = threading.Thread(target=create, name=f"socket-in-{netns}")
    thread.start()
    thread.join()
    if failures:
        raise failures[0]
    return created[0]


def is_tcp_listening(netns: str, address: str, port: int) -> bool:
    """Return whether a TCP connect from inside ``netns`` to ``address``:``port`` succeeds."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket_in_netns(netns, family) as probe:
        probe.settimeout(0.5)
        try:
            probe.connect((address, port))
        except OSError:
            return False
    return True
