"""Shared builders for the audit tests."""

from __future__ import annotations

from runtad.audit.model import Action, EgressEvent, Reason, Source


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_event(
    host: str | None = "example.com",
    *,
    runtime: str = "sb1",
    action: Action = Action.DENY,
    reason: Reason = Reason.DNS_NAME_NOT_ALLOWED,
    address: str | None = None,
    port: int | None = None,
    time: float = 1_800_000_000.0,
    count: int = 1,
    message: str = "test event",
) -> EgressEvent:
    return EgressEvent(
        time=time, runtime=runtime, action=action, reason=reason, source=Source.DNS,
        message=message, host=host, address=address, port=port, protocol="dns", count=count,
    )
