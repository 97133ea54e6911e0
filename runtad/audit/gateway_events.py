"""Audit events of the TLS SNI / HTTP Host gateway's decisions.

The gateway hands each decision to a callback; record_gateway_decision turns one into
an event through the sandbox's recorder. It reads the decision by its fields only, so
this package does not depend on the gateway's modules.
"""

from __future__ import annotations

from typing import Protocol

from .model import Action, Reason, Source
from .recorder import Recorder


class GatewayDecisionView(Protocol):
    """The fields of runtad.gateway.listener.GatewayDecision that an event needs."""

    @property
    def action(self) -> str: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def protocol(self) -> str | None: ...
    @property
    def host(self) -> str | None: ...
    @property
    def path(self) -> str | None: ...
    @property
    def destination(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def pattern(self) -> str | None: ...
    @property
    def target_host(self) -> str | None: ...
    @property
    def detail(self) -> str | None: ...


def gateway_reason(decision: GatewayDecisionView, enforced: bool) -> Reason:
    """Return the reason code of a decision; raise ValueError for an unknown deny code."""
    if decision.action == Action.DENY:
        return Reason(decision.reason or Reason.FIRST_FLIGHT_INVALID)
    if decision.pattern is None and not enforced:
        return Reason.ENFORCEMENT_DISABLED
    return Reason.ALLOWED_BY_POLICY


def record_gateway_decision(recorder: Recorder, decision: GatewayDecisionView) -> bool:
    """Record one gateway decision; return False when the audit queue dropped it."""
    return recorder.emit(
        Action(decision.action),
        gateway_reason(decision, recorder.policy.enforced()),
        Source.GATEWAY,
        host=decision.host,
        address=decision.destination or None,
        port=decision.port or None,
        protocol=decision.protocol,
        path=decision.path,
        rule=decision.pattern,
        error=decision.detail,
        target_host=decision.target_host,
    )
