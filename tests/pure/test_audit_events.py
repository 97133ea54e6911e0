"""Audit events as the recorder builds them: messages with the fix, kernel record mapping."""

from __future__ import annotations

import socket

import pytest

from runtad.audit.collector import parse_counter_packets, record_event
from runtad.audit.model import Action, EgressEvent, Reason, Source, format_time
from runtad.audit.names import NameMap
from runtad.audit.recorder import PolicyView, Recorder
from runtad.hosts import HostMatcher, parse_rules
from runtad.nflog import LogRecord
from tests.pure.audit_helpers import FakeClock

NOW = 1_800_000_000.0


def make_recorder(hosts: list[str], enforced: bool = True) -> tuple[Recorder, list[EgressEvent]]:
    matcher = HostMatcher(parse_rules(hosts, force=True))
    policy = PolicyView(
        rule_for=lambda host: rule.pattern if (rule := matcher.match(host)) else None,
        patterns=lambda: tuple(hosts),
        enforced=lambda: enforced,
    )
    events: list[EgressEvent] = []

    def submit(event: EgressEvent) -> bool:
        events.append(event)
        return True

    recorder = Recorder("sb1", submit, policy, NameMap(clock=FakeClock()), clock=lambda: NOW)
    return recorder, events


def log_record(prefix: str, dst: str, dport: int | None = 443, protocol: str = "tcp") -> LogRecord:
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    return LogRecord(
        prefix=prefix, family=family, protocol=protocol, src="10.213.0.2", dst=dst, sport=40000,
        dport=dport, uid=None, gid=None, seq=1, timestamp=None,
    )


def test_format_time_is_utc_milliseconds() -> None:
    assert format_time(1_800_000_000.1234) == "2027-01-15T08:00:00.123Z"


def test_denied_name_message_has_allow_command() -> None:
    recorder, events = make_recorder(["pypi.org"])
    recorder.emit(Action.DENY, Reason.DNS_NAME_NOT_ALLOWED, Source.DNS, host="example.com")
    assert "'runta egress allow sb1 example.com'" in events[0].message


def test_denied_apex_message_names_wildcard() -> None:
    recorder, events = make_recorder(["*.pythonhosted.org"])
    recorder.emit(Action.DENY, Reason.DNS_NAME_NOT_ALLOWED, Source.DNS, host="pythonhosted.org")
    message = events[0].message
    assert "*.pythonhosted.org matches only names below pythonhosted.org" in message
    assert "'runta egress allow sb1 pythonhosted.org'" in message


def test_denied_name_without_wildcard_has_no_apex_note() -> None:
    recorder, events = make_recorder(["*.other.org"])
    recorder.emit(Action.DENY, Reason.DNS_NAME_NOT_ALLOWED, Source.DNS, host="pythonhosted.org")
    assert "matches only names below" not in events[0].message


def test_invalid_query_name_message() -> None:
    recorder, events = make_recorder([])
    recorder.emit(Action.DENY, Reason.DNS_NAME_NOT_ALLOWED, Source.DNS, host="bad name!")
    assert "not a valid host name" in events[0].message
    assert "runta egress allow" not in events[0].message


def test_every_reason_has_message() -> None:
    recorder, events = make_recorder([])
    for reason in Reason:
        recorder.emit(Action.DENY, reason, Source.DAEMON, host="example.com", address="192.0.2.1")
    assert len(events) == len(Reason)
    assert all(event.message for event in events)


def test_emit_returns_submit_result() -> None:
    recorder = Recorder("sb1", lambda event: False)
    assert recorder.emit(Action.DENY, Reason.DNS_NAME_NOT_ALLOWED, Source.DNS, host="a.test") is False


def test_kernel_deny_unknown_address_is_direct_ip() -> None:
    recorder, events = make_recorder(["pypi.org"])
    assert record_event(recorder, log_record("runta deny ", "198.51.100.7", 80), NOW)
    (event,) = events
    assert event.action == Action.DENY
    assert event.reason == Reason.DIRECT_IP_NOT_ALLOWED
    assert event.host is None
    assert (event.address, event.port, event.protocol) == ("198.51.100.7", 80, "tcp")
    assert event.source == Source.KERNEL


def test_kernel_deny_known_name_is_host_not_allowed() -> None:
    recorder, events = make_recorder(["pypi.org"])
    recorder.learn_names("example.com", [("198.51.100.7", 300)])
    record_event(recorder, log_record("runta deny ", "198.51.100.7"), NOW)
    assert events[0].reason == Reason.HOST_NOT_ALLOWED
    assert events[0].host == "example.com"
    assert "'runta egress allow sb1 example.com'" in events[0].message


def test_kernel_deny_expired_address() -> None:
    recorder, events = make_recorder(["pypi.org"])
    recorder.learn_names("pypi.org", [("192.0.2.10", 300)])
    record_event(recorder, log_record("runta deny ", "192.0.2.10"), NOW)
    assert events[0].reason == Reason.ADDRESS_NOT_IN_SET
    assert events[0].host == "pypi.org"


def test_kernel_allow_carries_host() -> None:
    recorder, events = make_recorder(["pypi.org"])
    recorder.learn_names("pypi.org", [("2001:db8::10", 300)])
    record_event(recorder, log_record("runta allow ", "2001:db8::10"), NOW)
    assert events[0].action == Action.ALLOW
    assert events[0].reason == Reason.ALLOWED_BY_POLICY
    assert events[0].host == "pypi.org"
    assert "entry pypi.org" in events[0].message


def test_kernel_open_is_enforcement_disabled() -> None:
    recorder, events = make_recorder([], enforced=False)
    record_event(recorder, log_record("runta open ", "198.51.100.7", 53, "udp"), NOW)
    assert events[0].action == Action.ALLOW
    assert events[0].reason == Reason.ENFORCEMENT_DISABLED
    assert "'runta egress enable sb1'" in events[0].message


def test_kernel_icmp_has_no_port() -> None:
    recorder, events = make_recorder([])
    record_event(recorder, log_record("runta deny ", "198.51.100.7", None, "icmp"), NOW)
    assert events[0].port is None
    assert events[0].protocol == "icmp"


@pytest.mark.parametrize("destination", ["127.0.0.1", "::1"])
def test_kernel_loopback_ignored(destination: str) -> None:
    recorder, events = make_recorder([])
    assert not record_event(recorder, log_record("runta deny ", destination, 53, "udp"), NOW)
    assert events == []


def test_kernel_foreign_prefix_ignored() -> None:
    recorder, events = make_recorder([])
    assert not record_event(recorder, log_record("other ", "198.51.100.7"), NOW)
    assert events == []


def test_counter_packets_parsed() -> None:
    output = [{"counter": {"family": "inet", "table": "runta", "name": "log_suppressed", "packets": 97, "bytes": 4000}}]
    assert parse_counter_packets(output) == 97


def test_counter_missing_is_none() -> None:
    assert parse_counter_packets([]) is None
