"""Bookkeeping of one sandbox's allow-set elements: expiry, and which host rules own each.

The kernel expires elements on its own. This mirror lets runtad show the table, extend
timeouts without ever shortening them, and delete exactly the addresses that no
remaining rule owns. It is pure: the caller applies the commands it plans and commits
the plan only when the kernel accepted them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from .nft import Command
from .ruleset import build_element_add, build_element_delete

Clock = Callable[[], float]
# How long plan_add treats an address that prune dropped as possibly still in the kernel.
# The kernel's element outlives the book's by the time between planning a write and the
# kernel applying it: milliseconds normally, seconds on a stalled machine (an estimate).
PRUNED_MEMORY_SECONDS = 60.0


@dataclass(slots=True)
class Element:
    address: str
    expires_at: float
    # host rule pattern → how the address was learned for it ("resolver", "dns")
    owners: dict[str, str] = field(default_factory=dict)


class Learned(NamedTuple):
    """An address to allow for a host rule, for at least timeout seconds from now.

    A named tuple, not a frozen dataclass, because the DNS proxy builds one per answer
    address and a frozen dataclass takes several times longer to construct.
    """

    address: str
    timeout: int
    pattern: str
    source: str


@dataclass
class AddPlan:
    commands: list[Command]
    updates: list[tuple[str, float, str, str]]  # address, expires_at, pattern, source
    # Addresses left out of commands because their element already outlives the request.
    skipped: list[str] = field(default_factory=list)


class AddressBook:
    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._elements: dict[str, Element] = {}
        # Addresses that prune dropped, with the time it dropped them.
        self._pruned: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._elements)

    def plan_add(
        self, learned: Iterable[Learned], *, slack: float = 0.0, kernel_in_sync: bool = False
    ) -> AddPlan:
        """Plan set commands so that every address lives at least its timeout minus slack from now.

        An element keeps the later of its current expiry and the new one: a timeout is
        never shortened. An element is covered when its expiry is at or past the new one
        less slack seconds. A covered element that still needs a longer timeout keeps its
        expiry, so it is left at most slack seconds short of the request.

        With kernel_in_sync, the caller vouches that the sets still contain what this book
        contains (nothing else has written to them since its last commit), and covered
        addresses get no command. An address the book has never held, or pruned more than
        PRUNED_MEMORY_SECONDS ago, is then not in the sets either, so a plain add gives
        it its timeout without the refresh. Without kernel_in_sync, each covered address
        is added again with its current remaining time and without the refresh. That
        recreates an element removed behind runtad's back, and it never shortens one.
        """
        now = self._clock()
        items = list(learned)
        wanted: dict[str, float] = {}
        for item in items:
            wanted[item.address] = max(wanted.get(item.address, 0.0), now + item.timeout)

        refreshed: dict[str, int] = {}
        # Covered addresses confirmed out of sync, and in sync the addresses not in the sets.
        plain: dict[str, int] = {}
        skipped: list[str] = []
        expiry: dict[str, float] = {}
        for address, expires_at in wanted.items():
            current = self._elements.get(address)
            if current is not None and current.expires_at > now and current.expires_at >= expires_at - slack:
                expiry[address] = current.expires_at
                if kernel_in_sync:
                    skipped.append(address)
                else:
                    plain[address] = _whole_seconds(current.expires_at - now)
                continue
            if current is not None and current.expires_at > expires_at:
                expires_at = current.expires_at
            seconds = _whole_seconds(expires_at - now)
            if kernel_in_sync and current is None and not self._maybe_in_kernel(address, now):
                plain[address] = seconds
            else:
                refreshed[address] = seconds
            expiry[address] = now + seconds

        updates = [(item.address, expiry[item.address], item.pattern, item.source) for item in items]
        commands: list[Command] = []
        if refreshed:
            commands.extend(build_element_add(sorted(refreshed.items()), refresh=True))
        if plain:
            commands.extend(build_element_add(sorted(plain.items()), refresh=False))
        return AddPlan(commands, updates, sorted(skipped))

    def _maybe_in_kernel(self, address: str, now: float) -> bool:
        """Return whether prune dropped address recently enough that the kernel may still hold it."""
        pruned_at = self._pruned.get(address)
        return pruned_at is not None and now - pruned_at < PRUNED_MEMORY_SECONDS

    def commit_add(self, plan: AddPlan) -> None:
        elements = self._elements
        for address, expires_at, pattern, source in plan.updates:
            element = elements.get(address)
            if element is None:
                element = elements[address] = Element(address, expires_at)
            elif element.expires_at < expires_at:
                element.expires_at = expires_at
            # A resolver lookup outranks a DNS answer as the label shown for an owner.
            if element.owners.get(pattern) != "resolver":
                element.owners[pattern] = source

    def plan_remove_patterns(self, patterns: set[str]) -> tuple[list[Command], list[str]]:
        """Plan deleting the addresses that only the given rules own."""
        orphans = [
            element.address
            for element in self._elements.values()
            if element.owners and set(element.owners) <= patterns
        ]
        return (build_element_delete(orphans) if orphans else []), orphans

    def commit_remove_patterns(self, patterns: set[str], orphans: list[str]) -> None:
        for address in orphans:
            self._elements.pop(address, None)
        for element in self._elements.values():
            for pattern in patterns:
                element.owners.pop(pattern, None)

    def load_from_kernel(self, remaining: dict[str, int], owner_of: Callable[[str], str | None]) -> None:
        """Adopt the elements found in the kernel after a restart."""
        now = self._clock()
        for address, seconds in remaining.items():
            element = Element(address, now + seconds)
            owner = owner_of(address)
            if owner is not None:
                element.owners[owner] = "restored"
            self._elements[address] = element

    def prune(self) -> None:
        now = self._clock()
        expired = [address for address, element in self._elements.items() if element.expires_at <= now]
        for address in expired:
            del self._elements[address]
        forgotten = [
            address for address, pruned_at in self._pruned.items() if now - pruned_at >= PRUNED_MEMORY_SECONDS
        ]
        for address in forgotten:
            del self._pruned[address]
        for address in expired:
            self._pruned[address] = now

    def addresses_of(self, pattern: str) -> list[tuple[str, float, str]]:
        """Return (address, expires_at, source) of the live elements a rule owns."""
        now = self._clock()
        return sorted(
            (element.address, element.expires_at, element.owners[pattern])
            for element in self._elements.values()
            if pattern in element.owners and element.expires_at > now
        )

    def addresses_by_owner(self) -> dict[str, list[tuple[str, float, str]]]:
        """Return, per owning rule, (address, expires_at, source) of its live elements, sorted.

        One pass over the elements, where addresses_of per rule would scan them once per rule.
        """
        now = self._clock()
        owned: dict[str, list[tuple[str, float, str]]] = {}
        for element in self._elements.values():
            if element.expires_at > now:
                for pattern, source in element.owners.items():
                    owned.setdefault(pattern, []).append((element.address, element.expires_at, source))
        for rows in owned.values():
            rows.sort()
        return owned

    def remaining_seconds(self, addresses: list[str]) -> list[tuple[str, int]]:
        """Return (address, whole seconds until expiry) of the live ones among addresses."""
        now = self._clock()
        found = []
        for address in addresses:
            element = self._elements.get(address)
            if element is not None and element.expires_at > now:
                found.append((address, max(1, int(element.expires_at - now + 0.999))))
        return found

    def is_allowed(self, address: str) -> bool:
        element = self._elements.get(address)
        return element is not None and element.expires_at > self._clock()

    def live_addresses(self) -> set[str]:
        now = self._clock()
        return {address for address, element in self._elements.items() if element.expires_at > now}


def _whole_seconds(seconds: float) -> int:
    """Round a remaining time up to whole seconds, at least one, as set timeouts take it."""
    return max(1, int(seconds + 0.999))
