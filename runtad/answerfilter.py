"""Addresses that a DNS answer may not put into a sandbox's allow sets (DNS rebinding).

An allowed name is only as trustworthy as the owner of its zone. An answer that
points at loopback, link-local (the cloud metadata address 169.254.169.254 included),
the sandbox pools or the host's own addresses would open the host's services to the
sandbox on every port. Such addresses are dropped from answers and from lookups.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

from pyroute2 import IPRoute

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Addresses whose verdict is kept; past this many the cache starts over.
VERDICT_CACHE_SIZE = 8192

# The default of the denied_answer_networks setting.
DEFAULT_DENIED_NETWORKS = (
    "0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "255.255.255.255/32",
    "::/128", "::1/128", "fe80::/10", "ff00::/8", "::ffff:0:0/96",
)  # fmt: skip


class AnswerFilter:
    def __init__(self, networks: Iterable[str], addresses: Iterable[str] = ()) -> None:
        self.networks: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(n) for n in networks)
        self.addresses = frozenset(ipaddress.ip_address(a) for a in addresses)
        # Verdicts by address text, because DNS replies repeat the same addresses.
        self._verdicts: dict[str, bool] = {}
        self._denied = self._build_ranges()

    def extend(self, networks: Iterable[str], addresses: Iterable[str]) -> None:
        """Deny these networks and addresses as well (the sandbox pools, the host's own)."""
        self.networks += tuple(ipaddress.ip_network(n) for n in networks)
        self.addresses |= {ipaddress.ip_address(a) for a in addresses}
        self._verdicts.clear()
        self._denied = self._build_ranges()

    def add_addresses(self, addresses: Iterable[str]) -> list[str]:
        """Deny these addresses as well; return those that were not denied by address before."""
        parsed = {ipaddress.ip_address(a) for a in addresses}
        added = parsed - self.addresses
        if added:
            self.addresses |= added
            self._verdicts.clear()
            self._denied = self._build_ranges()
        return sorted(str(address) for address in added)

    def is_denied(self, address: str) -> bool:
        verdict = self._verdicts.get(address)
        if verdict is None:
            if len(self._verdicts) >= VERDICT_CACHE_SIZE:
                self._verdicts.clear()
            verdict = self._verdicts[address] = self._check(address)
        return verdict

    def _build_ranges(self) -> dict[int, DeniedRanges]:
        """Return the denied ranges by address family (socket.AF_INET, socket.AF_INET6)."""
        return {
            family: DeniedRanges.build(version, self.networks, self.addresses)
            for family, version in ((socket.AF_INET, 4), (socket.AF_INET6, 6))
        }

    def _check(self, address: str) -> bool:
        # inet_pton is several times cheaper than ipaddress and reads the text that
        # inet_ntop writes, which is how DNS answers reach here. Text it rejects, such as
        # an IPv6 address with a scope, takes the ipaddress path.
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        try:
            packed = socket.inet_pton(family, address)
        except OSError:
            return self._check_parsed(address)
        return self._denied[family].contains(int.from_bytes(packed, "big"))

    def _check_parsed(self, address: str) -> bool:
        parsed = ipaddress.ip_address(address)
        if parsed in self.addresses:
            return True
        return any(parsed.version == network.version and parsed in network for network in self.networks)


class DeniedRanges:
    """The denied networks and addresses of one IP version, as integers."""

    def __init__(self, ranges: tuple[tuple[int, int], ...], addresses: frozenset[int]) -> None:
        self.ranges = ranges  # (first, last) address of each network, both included
        self.addresses = addresses

    @classmethod
    def build(
        cls, version: int, networks: Iterable[IPNetwork], addresses: Iterable[IPAddress]
    ) -> DeniedRanges:
        ranges = tuple(
            (int(network.network_address), int(network.broadcast_address))
            for network in networks
            if network.version == version
        )
        # A scoped address (fe80::1%eth0) never equals an answer's address, which has no scope.
        values = frozenset(
            int(address) for address in addresses
            if address.version == version and getattr(address, "scope_id", None) is None
        )  # fmt: skip
        return cls(ranges, values)

    def contains(self, value: int) -> bool:
        if value in self.addresses:
            return True
        return any(first <= value <= last for first, last in self.ranges)


def host_addresses() -> list[str]:
    """Return every address on the interfaces of the calling thread's network namespace.

    pyroute2's IPRoute runs its own event loop, so call this on a worker thread.
    """
    with IPRoute() as ipr:
        return [str(message.get_attr("IFA_ADDRESS")) for message in ipr.get_addr()]
