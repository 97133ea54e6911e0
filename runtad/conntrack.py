"""End established flows that a tightened policy no longer allows (conntrack, over ctnetlink).

Deleting a flow's conntrack entry makes its next outgoing packet untracked. With loose
TCP pick-up off in the sandbox's namespace, that packet is not "established" again: it
reaches the output chain's final reject and the sandbox's socket gets a reset, so the
connection ends instead of carrying on or hanging.
"""

from __future__ import annotations

import socket
from pathlib import Path

from .ctnetlink import ConntrackEntry, ConntrackSocket
from .netns import call_in_netns

IPV6_LOOPBACK = socket.inet_pton(socket.AF_INET6, "::1")


def end_denied_flows(netns_path: Path, allowed: frozenset[str]) -> int:
    """Delete the sandbox's flows whose original destination is not in allowed.

    Flows that runtad's DNS redirect sent to loopback are kept. Returns how many
    flows were ended.
    """
    packed = pack_addresses(allowed)

    def work() -> int:
        with ConntrackSocket() as conntrack:
            denied = [entry for entry in conntrack.dump() if not is_kept(entry, packed)]
            return conntrack.delete(denied) if denied else 0

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


def pack_addresses(addresses: frozenset[str]) -> frozenset[bytes]:
    """Return the packed form of each IPv4 and IPv6 address text, as conntrack dumps carry them."""
    return frozenset(
        socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address) for address in addresses
    )


def is_kept(entry: ConntrackEntry, allowed: frozenset[bytes]) -> bool:
    """Return whether a flow stays: allowed destination, loopback, or runtad's DNS redirect."""
    destination = entry.original_destination
    if destination is None or is_loopback(destination):
        return True
    # A redirected flow answers from loopback: that is runtad's own DNS listener.
    if entry.reply_source is not None and is_loopback(entry.reply_source):
        return True
    return destination in allowed


def is_loopback(address: bytes) -> bool:
    """Return whether a packed address is in 127.0.0.0/8 or is ::1."""
    if len(address) == 4:
        return address[0] == 127
    return address == IPV6_LOOPBACK
