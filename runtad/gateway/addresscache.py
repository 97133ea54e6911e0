"""Cache of the addresses a host name resolves to, for checking a gateway destination.

Each address keeps its own expiry (its TTL, clamped to bounds). A new lookup adds to the
addresses still live instead of replacing them, so a name whose DNS records rotate
through a pool (a CDN) matches every address a client may have received within the TTL.
Lookups of one name run once at a time, fresh lookups at most once per refresh
interval, and the cache holds at most max_names names (least recently used go first).
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ..resolver import Resolution

Resolve = Callable[[str], Awaitable[Resolution]]
Clock = Callable[[], float]


class NameResolutionError(Exception):
    """A host name has no live cached addresses and its lookup returned none."""

    def __init__(self, host: str, detail: str) -> None:
        super().__init__(f"cannot resolve {host!r}: {detail}")
        self.host = host
        self.detail = detail


@dataclass
class _Entry:
    expiries: dict[str, float] = field(default_factory=dict)  # address → expiry time
    looked_up_at: float = float("-inf")


class NameAddressCache:
    def __init__(
        self,
        resolve: Resolve,
        *,
        clock: Clock = time.monotonic,
        max_names: int = 4096,
        min_ttl: int = 30,
        max_ttl: int = 86400,
        refresh_interval: float = 1.0,
    ) -> None:
        self._resolve = resolve
        self._clock = clock
        self.max_names = max_names
        self.min_ttl = min_ttl
        self.max_ttl = max_ttl
        self.refresh_interval = refresh_interval
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lookups: dict[str, asyncio.Future[Resolution]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    async def addresses_for(self, host: str, *, fresh: bool = False) -> dict[str, int]:
        """Return address → seconds left for host, looking it up when needed.

        Without fresh, live cached addresses are returned as they are. With fresh, a new
        lookup runs unless the last one is younger than the refresh interval. Raises
        NameResolutionError when no address is live after the lookup.
        """
        entry = self._entries.get(host)
        live = self._live(entry)
        now = self._clock()
        if entry is not None and live and not fresh:
            self._entries.move_to_end(host)
            return live
        if entry is not None and now - entry.looked_up_at < self.refresh_interval:
            if live:
                return live
            raise NameResolutionError(host, "no addresses in the last lookup")

        resolution = await self._lookup(host)
        entry = self._store(host, resolution)
        live = self._live(entry)
        if not live:
            raise NameResolutionError(host, resolution.error or "no A or AAAA records")
        return live

    def _live(self, entry: _Entry | None) -> dict[str, int]:
        if entry is None:
            return {}
        now = self._clock()
        expired = [address for address, expiry in entry.expiries.items() if expiry <= now]
        for address in expired:
            del entry.expiries[address]
        return {address: max(1, int(expiry - now)) for address, expiry in entry.expiries.items()}

    async def _lookup(self, host: str) -> Resolution:
        pending = self._lookups.get(host)
        if pending is None:
            pending = asyncio.ensure_future(self._resolve(host))
            self._lookups[host] = pending
            pending.add_done_callback(lambda _: self._lookups.pop(host, None))
        # Shielded: one waiter giving up does not cancel the lookup the others wait on.
        return await asyncio.shield(pending)

    def _store(self, host: str, resolution: Resolution) -> _Entry:
        now = self._clock()
        entry = self._entries.pop(host, None) or _Entry()
        entry.looked_up_at = now
        for text, ttl in resolution.addresses:
            address = str(ipaddress.ip_address(text))  # one spelling per IPv6 address
            bounded = min(max(ttl, self.min_ttl), self.max_ttl)
            entry.expiries[address] = max(entry.expiries.get(address, 0.0), now + bounded)
        self._entries[host] = entry
        while len(self._entries) > self.max_names:
            self._entries.popitem(last=False)
        return entry
