"""The command line that ``runta sandbox exec`` replaces itself with.

The command enters the sandbox's network namespace and runs under setpriv without the
capabilities that would let it change or bypass the sandbox's enforcement (a process
with CAP_NET_ADMIN over the netns could flush the nftables table).
"""

from __future__ import annotations

import pwd
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

# Capability names as setpriv(1) spells them (util-linux 2.38): NET_ADMIN and SYS_ADMIN
# could rewrite the netns rules, NET_RAW forges packets, SYS_MODULE and BPF load kernel
# code, SYS_PTRACE could take over a process that still has capabilities.
DROPPED_CAPABILITIES = ("net_admin", "net_raw", "sys_admin", "sys_module", "sys_ptrace", "bpf")
# `ip netns exec NAME` works for namespaces bound under these directories. It also
# bind-mounts /etc/netns/NAME/* over /etc, so a sandbox can have its own resolv.conf.
NETNS_DIRECTORIES = (PurePosixPath("/run/netns"), PurePosixPath("/var/run/netns"))

ToolLookup = Callable[[str], str | None]


class ExecSetupError(Exception):
    """The exec command line cannot be built, and the message names the fix."""


@dataclass(frozen=True)
class ExecUser:
    """The account a command runs as: name for setpriv --reuid and its primary group id."""

    name: str
    gid: int


def resolve_user(user: str) -> ExecUser:
    """Look up a user name or numeric uid in the passwd database."""
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        raise ExecSetupError(
            f"user {user!r} not found in the passwd database: pass an existing user name or uid"
        ) from None
    return ExecUser(name=entry.pw_name, gid=entry.pw_gid)


def find_tool(name: str, package: str, which: ToolLookup) -> str:
    path = which(name)
    if path is None:
        raise ExecSetupError(
            f"{name} not found on PATH: install the {package} package, which provides it "
            f"(apt-get install {package})"
        )
    return path


def netns_entry_command(netns: str, which: ToolLookup) -> list[str]:
    """Return the command prefix that runs the rest inside the network namespace ``netns``."""
    path = PurePosixPath(netns)
    if path.parent in NETNS_DIRECTORIES:
        return [find_tool("ip", "iproute2", which), "netns", "exec", path.name]
    return [find_tool("nsenter", "util-linux", which), f"--net={netns}"]


def setpriv_command(user: ExecUser | None, which: ToolLookup) -> list[str]:
    """Return the setpriv prefix that drops the capabilities and optionally switches user."""
    command = [
        find_tool("setpriv", "util-linux", which),
        "--no-new-privs",
        "--inh-caps=-all",
        "--bounding-set=" + ",".join("-" + cap for cap in DROPPED_CAPABILITIES),
    ]
    if user is not None:
        command += [f"--reuid={user.name}", f"--regid={user.gid}", "--init-groups"]
    return command


# The host account of the user-namespace root that runs a command given no --user.
UNPRIVILEGED_USER = "nobody"


def build_exec_argv(
    netns: str,
    command: Sequence[str],
    user: ExecUser | None = None,
    which: ToolLookup | None = None,
    host_root: bool = False,
) -> list[str]:
    """Return the full argv: netns entry, then setpriv, then ``--`` and the command.

    Without a user the command runs as root of a user namespace of its own, which is
    UNPRIVILEGED_USER on the host. The host's uid 0 could still write the sandbox's net
    sysctls and runtad's state file, even without CAP_NET_ADMIN. host_root keeps the
    host's uid 0 for commands that need it.
    ``which`` finds the tools on PATH and defaults to shutil.which.
    """
    which = which or shutil.which
    if not command:
        raise ExecSetupError("no command given: write it after --, e.g. -- /bin/sh")
    prefix = netns_entry_command(netns, which)
    if user is not None or host_root:
        return [*prefix, *setpriv_command(user, which), "--", *command]
    unshare = [find_tool("unshare", "util-linux", which), "--user", "--map-root-user"]
    nobody = resolve_user(UNPRIVILEGED_USER)
    return [*prefix, *setpriv_command(nobody, which), "--", *unshare, "--", *command]
