"""End established flows that a tightened policy no longer allows (conntrack, via pyroute2).

Deleting a flow's conntrack entry makes its next outgoing packet a new flow, which the
output chain then rejects with a TCP reset or ICMP error, so the sandbox sees the
connection end instead of hanging.
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
