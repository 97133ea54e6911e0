"""One sandbox's audit recorder: the single emit() through which every decision is recorded."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

from .messages import Facts, describe
from .model import Action, EgressEvent, Reason, Source
from .names import NameMap

Submit = Callable[[EgressEvent], bool]
Clock = Callable[[], float]


def _no_rule(host: str) -> str | None:
    return None


def _no_patterns() -> Collection[str]:
    return ()


def _enforced() -> bool:
    return True


@dataclass(frozen=True)
class PolicyView:
    """Read access to a sandbox's current policy, as the messages and kernel events need it."""

    rule_for: Callable[[str], str | None] = _no_rule  # allowlist entry matching a host
    patterns: Callable[[], Collection[str]] = _no_patterns  # every allowlist entry
    enforced: Callable[[], bool] = _enforced


class Recorder:
    """Build events for one sandbox and hand them to the audit writer without blocking."""

    def __init__(
        self,
        runtime: str,
        submit: Submit,
        policy: PolicyView | None = None,
        names: NameMap | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.runtime = runtime
        self.policy = policy or PolicyView()
        self.names = names or NameMap()
        self._submit = submit
        self._clock = clock
        self._patterns_seen: Collection[str] | None = None
        self._pattern_set: frozenset[str] = frozenset()

    @classmethod
    def discarding(cls, runtime: str) -> Recorder:
        """Return a recorder that stores nothing, for a sandbox run without an audit service."""
        return cls(runtime, lambda event: True)

    def emit(
        self,
        action: Action,
        reason: Reason,
        source: Source,
        *,
        host: str | None = None,
        address: str | None = None,
        port: int | None = None,
        protocol: str | None = None,
        path: str | None = None,
        count: int = 1,
        rule: str | None = None,
        answer_size: int | None = None,
        error: str | None = None,
        target_host: str | None = None,
        when: float | None = None,
    ) -> bool:
        """Record one decision; return False when the audit queue was full and it was dropped.

        rule, answer_size, error and target_host only feed the message.
        """
        apex_rule = None
        if action == Action.DENY and host is not None and f"*.{host}" in self._patterns():
            apex_rule = f"*.{host}"
        facts = Facts(
            runtime=self.runtime, host=host, address=address, port=port, protocol=protocol,
            count=count, rule=rule, apex_rule=apex_rule, answer_size=answer_size, error=error,
            enforced=self.policy.enforced(), target_host=target_host,
        )
        event = EgressEvent(
            time=self._clock() if when is None else when,
            runtime=self.runtime,
            action=action,
            reason=reason,
            source=source,
            message=describe(reason, facts),
            host=host,
            address=address,
            port=port,
            protocol=protocol,
            path=path,
            count=count,
        )
        return self._submit(event)

    def _patterns(self) -> frozenset[str]:
        # A policy change replaces the collection, so a set is rebuilt only then.
        patterns = self.policy.patterns()
        if patterns is not self._patterns_seen:
            self._patterns_seen = patterns
            self._pattern_set = frozenset(patterns)
        return self._pattern_set

    def learn_names(self, host: str, addresses: Iterable[tuple[str, int]]) -> None:
        """Remember that host resolved to these (address, TTL) pairs, for kernel events."""
        self.names.learn(host, addresses)

    def name_of(self, address: str) -> str | None:
        # An empty map skips lookup(), which parses the address. A sandbox that resolved
        # no name and floods addresses directly has an empty map.
        if not self.names:
            return None
        return self.names.lookup(address)
