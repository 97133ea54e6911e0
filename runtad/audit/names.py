"""Address → host name, as a sandbox's own DNS answers and runtad's lookups gave them.

Kernel log events carry only addresses; this map lets them name the host. It is bounded
and expiring so that a sandbox resolving many names cannot grow the daemon without limit.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

Clock = Callable[[], float]

DEFAULT_MAX_ENTRIES = 16384
# An entry lives at least this long whatever the TTL, because clients often keep an
# answer longer than its TTL and a late connection should still show the name.
DEFAULT_MIN_SECONDS = 300.0
DEFAULT_MAX_SECONDS = 86400.0
# A full map looks for expired entries to drop at most this often, because that scan
# walks every entry.
PRUNE_INTERVAL = 10.0


class NameMap:
    """Map addresses to the name they were last answered for, with expiry and a size bound.

    When full, expired entries go first, then the entry refreshed least recently.
    """

    def __init__(
        self,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        min_seconds: float = DEFAULT_MIN_SECONDS,
        max_seconds: float = DEFAULT_MAX_SECONDS,
        clock: Clock = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, not {max_entries}")
        self.max_entries = max_entries
        self.min_seconds = min_seconds
        self.max_seconds = max_seconds
        self._clock = clock
        self._entries: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._pruned_at = -PRUNE_INTERVAL

    def __len__(self) -> int:
        return len(self._entries)

    def learn(self, host: str, addresses: Iterable[tuple[str, int]]) -> None:
        """Record that host resolved to each (address, TTL seconds)."""
        now = self._clock()
        for address, ttl in addresses:
            key = _normalize(address)
            if key is None:
                continue
            keep = min(max(float(ttl), self.min_seconds), self.max_seconds)
            # NOTE: an address shared by several names (a CDN) keeps only the name of its
            # latest answer, so a kernel event may name a sibling host.
            self._entries[key] = (host, now + keep)
            self._entries.move_to_end(key)
        if len(self._entries) > self.max_entries and now - self._pruned_at >= PRUNE_INTERVAL:
            self._pruned_at = now
            self.prune()
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def lookup(self, address: str) -> str | None:
        """Return the host that address was last answered for, or None if unknown or expired."""
        key = _normalize(address)
        entry = self._entries.get(key) if key is not None else None
        if entry is None:
            return None
        host, expires_at = entry
        if expires_at <= self._clock():
            del self._entries[key]  # type: ignore[arg-type]
            return None
        return host

    def prune(self) -> int:
        """Delete expired entries and return how many were deleted."""
        now = self._clock()
        expired = [key for key, (_, expires_at) in self._entries.items() if expires_at <= now]
        for key in expired:
            del self._entries[key]
        return len(expired)


def _normalize(address: str) -> str | None:
    """Return the address in its compressed form, or None if it is not an IP address.

    inet_pton/inet_ntop do this about 20 times faster than ipaddress, so a large policy's
    answers cost little. ipaddress still handles what they reject or write differently: a
    scope suffix, and IPv4-mapped IPv6 addresses, which inet_ntop writes with a dotted quad.
    """
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        text = socket.inet_ntop(family, socket.inet_pton(family, address))
    except (OSError, ValueError):
        text = None
    if text is not None and not (family == socket.AF_INET6 and "." in text):
        return text
    try:
        return ipaddress.ip_address(address).compressed
    except ValueError:
        return None
