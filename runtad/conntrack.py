"""End established flows that a tightened policy no longer allows (conntrack, via pyroute2).

Deleting a flow's conntrack entry makes its next outgoing packet untracked. With loose
TCP pick-up off in the sandbox's namespace, that packet is not "established" again: it
reaches the output chain's final reject and the sandbox's socket gets a reset, so the
connection ends instead of carrying on or hanging.
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

from pyroute2 import Conntrack

from .netns import call_in_netns


def end_denied_flows(netns_path: Path, allowed: frozenset[str]) -> int:
    """Delete the sandbox's flows whose original destination is not in allowed.

    Flows that runtad's DNS redirect sent to loopback are kept. Returns how many
    flows were ended.
    """

    def work() -> int:
        ended = 0
        for family in (socket.AF_INET, socket.AF_INET6):
            with Conntrack(nfgen_family=family) as conntrack:
                for entry in list(conntrack.dump_entries()):
                    if _is_kept(entry, allowed):
                        continue
                    try:
                        conntrack.delete(entry)
                        ended += 1
                    except OSError:
                        # The flow ended on its own between the dump and the delete.
                        continue
        return ended

    return call_in_netns(netns_path, work)


def disable_loose_pickup(netns_path: Path) -> None:
    """Stop conntrack from adopting mid-stream TCP packets as established flows.

    With the default nf_conntrack_tcp_loose=1, the first packet after a deleted entry,
    such as a server's next segment, creates a new entry that the sandbox's replies then
    match as established, and a revoked flow would live on.
    """

    def work() -> None:
        # /proc/sys/net belongs to the namespace of the task that opens it: this thread's.
        Path("/proc/sys/net/netfilter/nf_conntrack_tcp_loose").write_text("0\n")

    call_in_netns(netns_path, work)


def _is_kept(entry: object, allowed: frozenset[str]) -> bool:
    original = entry.tuple_orig  # type: ignore[attr-defined]
    reply = entry.tuple_reply  # type: ignore[attr-defined]
    destination = original.daddr
    if destination is None:
        return True
    if ipaddress.ip_address(destination).is_loopback:
        return True
    # A redirected flow answers from loopback: that is runtad's own DNS listener.
    if reply.saddr is not None and ipaddress.ip_address(reply.saddr).is_loopback:
        return True
    return destination in allowed
