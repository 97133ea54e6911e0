"""Gateway decisions as audit events."""

from __future__ import annotations

from dataclasses import dataclass

from runtad.audit.gateway_events import record_gateway_decision
from runtad.audit.model import Action, EgressEvent, Reason, Source
from runtad.audit.recorder import PolicyView, Recorder
from runtad.gateway.decision import DENY_REASONS


@dataclass(frozen=True)
class Decision:
    action: str
    reason: str | None
    protocol: str | None = "tls"
    host: str | None = "example.com"
    path: str | None = None
    destination: str = "192.0.2.10"
    port: int = 443
    pattern: str | None = None
    target_host: str | None = None
    detail: str | None = None


def record(decision: Decision, *, enforced: bool = True) -> EgressEvent:
    events: list[EgressEvent] = []

    def submit(event: EgressEvent) -> bool:
        events.append(event)
        return True

    recorder = Recorder("sb1", submit, PolicyView(enforced=lambda: enforced))
    record_gateway_decision(recorder, decision)
    (event,) = events
    return event


def test_gateway_codes_all_known() -> None:
    assert DENY_REASONS <= {reason.value for reason in Reason}


def test_gateway_sni_denial() -> None:
    event = record(Decision("deny", "sni_not_allowed"))
    assert event.action == Action.DENY
    assert event.reason == Reason.SNI_NOT_ALLOWED
    assert event.source == Source.GATEWAY
    assert (event.host, event.address, event.port) == ("example.com", "192.0.2.10", 443)
    assert "'runta egress allow sb1 example.com'" in event.message


def test_gateway_http_denial_keeps_path() -> None:
    decision = Decision("deny", "host_header_not_allowed", protocol="http", port=80, path="/simple/")
    event = record(decision)
    assert event.path == "/simple/"
    assert event.protocol == "http"


def test_gateway_host_mismatch_names_both() -> None:
    decision = Decision("deny", "host_mismatch", protocol="http", host="pypi.org", target_host="other.test")
    assert "other.test" in record(decision).message


def test_gateway_allowed_by_entry() -> None:
    event = record(Decision("allow", None, host="pypi.org", pattern="pypi.org"))
    assert event.reason == Reason.ALLOWED_BY_POLICY
    assert "entry pypi.org" in event.message


def test_gateway_open_sandbox() -> None:
    event = record(Decision("allow", None), enforced=False)
    assert event.reason == Reason.ENFORCEMENT_DISABLED


def test_gateway_busy_without_destination() -> None:
    event = record(Decision("deny", "gateway_busy", protocol=None, host=None, destination="", port=0))
    assert event.address is None
    assert event.port is None
