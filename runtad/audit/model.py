"""The one audit event model shared by every source: DNS proxy, kernel log, gateway, daemon.

Reason codes are stable machine-readable values that clients may match on. The human
sentence that goes with each is built in messages.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

CATEGORY_EGRESS = "egress"
# Every category the audits table holds; the API rejects a filter on any other.
CATEGORIES = (CATEGORY_EGRESS,)


class Action(StrEnum):
    ALLOW = "allow"
    DENY = "deny"


class Source(StrEnum):
    DNS = "dns"  # the sandbox's DNS proxy
    KERNEL = "kernel"  # NFLOG events of the sandbox's ruleset
    GATEWAY = "gateway"  # the TLS SNI / HTTP Host check
    DAEMON = "daemon"  # runtad itself: policy changes, its own bookkeeping


class Reason(StrEnum):
    """Reason code of an event. The values are part of the API, so never rename one."""

    # Denials.
    HOST_NOT_ALLOWED = "host_not_allowed"
    DNS_NAME_NOT_ALLOWED = "dns_name_not_allowed"
    DIRECT_IP_NOT_ALLOWED = "direct_ip_not_allowed"
    ADDRESS_NOT_IN_SET = "address_not_in_set"
    POLICY_NOT_LOADED = "policy_not_loaded"
    FLOW_REVOKED = "flow_revoked"
    DAEMON_DOWN = "daemon_down"
    # Denials by the TLS SNI / HTTP Host gateway (the codes of runtad.gateway.decision).
    SNI_NOT_ALLOWED = "sni_not_allowed"
    SNI_MISSING = "sni_missing"
    SNI_ADDRESS_MISMATCH = "sni_address_mismatch"
    ECH_NOT_ALLOWED = "ech_not_allowed"
    HOST_HEADER_NOT_ALLOWED = "host_header_not_allowed"
    HOST_MISSING = "host_missing"
    HOST_MISMATCH = "host_mismatch"
    HOST_ADDRESS_MISMATCH = "host_address_mismatch"
    RESOLVE_FAILED = "resolve_failed"
    FIRST_FLIGHT_INVALID = "first_flight_invalid"
    FIRST_FLIGHT_TIMEOUT = "first_flight_timeout"
    GATEWAY_BUSY = "gateway_busy"
    # A DNS answer of an allowed name pointed at a denied address (rebinding).
    ANSWER_ADDRESS_DENIED = "answer_address_denied"
    # Allowed traffic.
    ALLOWED_BY_POLICY = "allowed_by_policy"
    DNS_ALLOWED = "dns_allowed"
    ENFORCEMENT_DISABLED = "enforcement_disabled"
    # Failures of runtad or its upstream that ended an allowed lookup.
    SET_UPDATE_FAILED = "set_update_failed"
    UPSTREAM_FAILED = "upstream_failed"
    # Events that stand for others which were not recorded one by one.
    EVENTS_SUPPRESSED = "events_suppressed"
    EVENTS_LOST = "events_lost"
    EVENTS_DROPPED = "events_dropped"


# The fields that make two events repeats of each other (see EgressEvent.fold_key).
FoldKey = tuple[str, str, str | None, str | None, int | None, str, str, str | None, str | None]


@dataclass(frozen=True)
class EgressEvent:
    """One egress decision, or a run of identical ones when count > 1.

    time is the first occurrence, in seconds since the epoch.
    """

    time: float
    runtime: str
    action: Action
    reason: Reason
    source: Source
    message: str
    host: str | None = None
    address: str | None = None
    port: int | None = None
    protocol: str | None = None
    path: str | None = None
    count: int = 1

    @property
    def category(self) -> str:
        return CATEGORY_EGRESS

    @property
    def fold_key(self) -> FoldKey:
        # The query type, source port and message stay out of the key, so the A and AAAA
        # queries of one lookup fold into one event. Source, protocol and path stay in:
        # a gateway's HTTP decision must keep its path even next to a kernel event.
        return (
            self.runtime, self.action, self.host, self.address, self.port, self.reason,
            self.source, self.protocol, self.path,
        )  # fmt: skip

    def to_payload(self) -> dict[str, Any]:
        """Return the event as the JSON document stored and served by the API."""
        return {
            "time": format_time(self.time),
            "runtime": self.runtime,
            "action": str(self.action),
            "host": self.host,
            "address": self.address,
            "port": self.port,
            "protocol": self.protocol,
            "path": self.path,
            "reason": str(self.reason),
            "message": self.message,
            "source": str(self.source),
            "count": self.count,
        }


# The last whole second that format_time() formatted, and its text up to the seconds.
# A flood formats many events of the same second, and datetime costs about 2 us per call.
# The tuple is replaced whole, so threads that share it never see half an update.
_last_second: tuple[int, str] = (0, "1970-01-01T00:00:00")


def format_time(timestamp: float) -> str:
    """Format seconds since the epoch as UTC ISO 8601 with milliseconds and a Z suffix.

    The text is what datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")
    writes: microseconds rounded half to even, then truncated to milliseconds.
    """
    global _last_second
    # The steps of CPython's _PyTime_DoubleToDenominator, which datetime uses, so that the
    # text matches datetime's also where a value rounds into the next second.
    fraction, whole = math.modf(timestamp)
    second = int(whole)
    microseconds = round(fraction * 1e6)
    if microseconds >= 1_000_000:
        second += 1
        microseconds -= 1_000_000
    elif microseconds < 0:
        second -= 1
        microseconds += 1_000_000
    cached_second, text = _last_second
    if second != cached_second:
        text = datetime.fromtimestamp(second, UTC).isoformat(timespec="seconds")[:-6]
        _last_second = (second, text)
    return f"{text}.{microseconds // 1000:03d}Z"
