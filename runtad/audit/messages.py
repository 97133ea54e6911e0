"""The human sentence of each audit event: what happened and, for a denial, the fix.

Each reason has one function here, so the wording of a reason lives in one place.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import NamedTuple

from ..hosts import canonical_name
from .model import Reason


class Facts(NamedTuple):
    """Values a message may mention besides the event's own fields.

    A NamedTuple, because every kernel log event builds one, and a frozen dataclass of
    12 fields took two to four times as long to build in timeit runs.
    """

    runtime: str
    host: str | None = None
    address: str | None = None
    port: int | None = None
    protocol: str | None = None
    # The field hides tuple.count(), which nothing calls on Facts.
    count: int = 1  # type: ignore[assignment]
    rule: str | None = None  # the allowlist entry that matched the host
    apex_rule: str | None = None  # "*.HOST" when the allowlist has it and HOST was denied
    answer_size: int | None = None  # addresses in an allowed DNS answer
    error: str | None = None
    enforced: bool = True
    target_host: str | None = None  # the HTTP request target's host when it differs from Host


def describe(reason: Reason, facts: Facts) -> str:
    return _BUILDERS[reason](facts)


def _allow_command(facts: Facts, host: str) -> str:
    return f"'runta egress allow {facts.runtime} {host}'"


def _apex_note(facts: Facts) -> str:
    if facts.apex_rule is None or facts.host is None:
        return ""
    return (
        f" The entry {facts.apex_rule} matches only names below {facts.host},"
        f" not {facts.host} itself."
    )


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return False
    return True


def _destination(facts: Facts) -> str:
    target = facts.address or "an unknown address"
    if facts.host is not None and facts.host != facts.address:
        target = f"{facts.host} ({target})"
    if facts.port is not None:
        target += f" port {facts.port}"
    if facts.protocol is not None:
        target += f" over {facts.protocol}"
    return target


def _host_not_allowed(facts: Facts) -> str:
    host = facts.host or "the host"
    return (
        f"{host} is not in the allowlist of sandbox {facts.runtime}, so the connection to"
        f" {_destination(facts)} was denied.{_apex_note(facts)}"
        f" To allow it, run {_allow_command(facts, host)}."
    )


def _dns_name_not_allowed(facts: Facts) -> str:
    host = facts.host or ""
    if canonical_name(host) is None:
        return (
            f"The query name {host!r} is not a valid host name, so runtad answered NXDOMAIN."
        )
    return (
        f"{host} is not in the allowlist of sandbox {facts.runtime}, so its DNS query was"
        f" answered NXDOMAIN.{_apex_note(facts)} To allow it, run {_allow_command(facts, host)}."
    )


def _direct_ip_not_allowed(facts: Facts) -> str:
    return (
        f"The connection to {_destination(facts)} was denied because no DNS answer of"
        f" sandbox {facts.runtime} named this address, and the allowlist takes host names."
        f" Connect by host name and allow that name with {_allow_command(facts, 'HOST')}."
    )


def _address_not_in_set(facts: Facts) -> str:
    return (
        f"The connection to {_destination(facts)} was denied because the address is no longer"
        f" in the allow set, although the entry {facts.rule} allows {facts.host}. Its DNS"
        f" answer expired or the address was removed, so resolve {facts.host} again and"
        " connect to the address in the new answer."
    )


def _policy_not_loaded(facts: Facts) -> str:
    return (
        f"The policy of sandbox {facts.runtime} is not loaded yet, so the query for"
        f" {facts.host} was answered SERVFAIL. Clients retry, and the next answer follows"
        " the policy."
    )


def _flow_revoked(facts: Facts) -> str:
    return (
        f"{facts.count} open connections of sandbox {facts.runtime} were ended because the"
        " new policy no longer allows their destinations."
    )


def _daemon_down(facts: Facts) -> str:
    return (
        f"runtad was not running for {facts.error}. Meanwhile the kernel kept enforcing the"
        f" policy of sandbox {facts.runtime}: its DNS queries failed and no new address was"
        " allowed, while connections to addresses already in its sets went on."
    )


def _allowed_by_policy(facts: Facts) -> str:
    if facts.rule is None:
        return f"The connection to {_destination(facts)} was allowed by the allow set."
    return f"The connection to {_destination(facts)} was allowed by the entry {facts.rule}."


def _dns_allowed(facts: Facts) -> str:
    size = facts.answer_size or 0
    if size == 0:
        carried = "no addresses"
    elif size == 1:
        carried = "1 address, which is now in the allow set"
    else:
        carried = f"{size} addresses, which are now in the allow set"
    return f"{facts.host} is allowed by the entry {facts.rule}, and its answer carried {carried}."


def _enforcement_disabled(facts: Facts) -> str:
    if facts.address is None:
        what = f"the DNS query for {facts.host}"
    else:
        what = f"the connection to {_destination(facts)}"
    return (
        f"Enforcement is off in sandbox {facts.runtime}, so {what} passed unchecked."
        f" To turn it on, run 'runta egress enable {facts.runtime}'."
    )


def _set_update_failed(facts: Facts) -> str:
    outcome = (
        "runtad answered SERVFAIL" if facts.enforced else "the answer was passed on unchecked"
    )
    return (
        f"The kernel rejected the addresses of {facts.host} for the allow set of sandbox"
        f" {facts.runtime}, so {outcome}. Error: {facts.error}. runtad tries again on the next"
        " query."
    )


def _upstream_failed(facts: Facts) -> str:
    return (
        f"No upstream name server answered the query for {facts.host}, so runtad answered"
        f" SERVFAIL. Error: {facts.error}. Check upstream_dns in runtad.toml."
    )


def _events_suppressed(facts: Facts) -> str:
    return (
        f"{facts.count} similar events of sandbox {facts.runtime} were suppressed by the"
        " kernel log rate limit. They were allowed or denied as the policy says, but not"
        " recorded one by one. To record more, raise log_rate and log_burst in runtad.toml."
    )


def _events_lost(facts: Facts) -> str:
    return (
        f"{facts.count} kernel log events of sandbox {facts.runtime} were lost before runtad"
        " read them, mostly because the NFLOG receive buffer overflowed. runtad counts them"
        " as the packets that reached a log rule minus the records it received. The count of"
        " one report can fall short while packets keep arriving, but the sandbox's reports add"
        " up to the exact number once its traffic pauses for a poll interval."
    )


def _events_dropped(facts: Facts) -> str:
    return (
        f"{facts.count} audit events of sandbox {facts.runtime} could not be stored because"
        " the audit queue was full or the audit database was not writable. The runtad log"
        " has the cause."
    )


def _detail(facts: Facts) -> str:
    return f" Detail: {facts.error}." if facts.error else ""


def _named_host_not_allowed(field: str) -> Callable[[Facts], str]:
    def build(facts: Facts) -> str:
        host = facts.host or "the host"
        denied = (
            f"{host} ({field}) is not in the allowlist of sandbox {facts.runtime}, so the"
            f" connection to {_destination(facts)} was denied.{_apex_note(facts)}"
        )
        if _is_address(host):
            return denied + " The allowlist takes host names: connect by an allowed name instead."
        return f"{denied} To allow it, run {_allow_command(facts, host)}."

    return build


def _no_host_named(what: str) -> Callable[[Facts], str]:
    def build(facts: Facts) -> str:
        return (
            f"The connection to {_destination(facts)} was denied because {what}, so the gateway"
            " cannot check a host name, and the address is not in the allow set."
        )

    return build


def _address_mismatch(facts: Facts) -> str:
    entry = f" by the entry {facts.rule}" if facts.rule is not None else ""
    return (
        f"{facts.host} is allowed{entry}, but the connection went to"
        f" {_destination(facts)}, which is not one of its addresses, so it was denied."
        f"{_detail(facts)}"
    )


def _ech_not_allowed(facts: Facts) -> str:
    return (
        f"The connection to {_destination(facts)} used Encrypted Client Hello, and its outer"
        f" name {facts.host or '(none)'} is not in the allowlist of sandbox {facts.runtime}, so it"
        " was denied. The gateway checks only the outer name."
    )


def _host_mismatch(facts: Facts) -> str:
    return (
        f"The HTTP request to {_destination(facts)} names {facts.target_host} in its target"
        " but another host in its Host field, so it was denied."
    )


def _resolve_failed(facts: Facts) -> str:
    return (
        f"runtad could not resolve {facts.host} to check the connection to"
        f" {_destination(facts)}, so it was denied.{_detail(facts)}"
    )


def _first_flight_invalid(facts: Facts) -> str:
    return (
        f"The connection to {_destination(facts)} sent neither a TLS ClientHello nor an HTTP"
        f" request the gateway could read, so it was denied.{_detail(facts)}"
    )


def _first_flight_timeout(facts: Facts) -> str:
    return (
        f"The connection to {_destination(facts)} sent no complete TLS ClientHello or HTTP"
        " request in time, so it was denied."
    )


def _gateway_busy(facts: Facts) -> str:
    return (
        f"The gateway of sandbox {facts.runtime} had too many connections open, so the"
        f" connection to {_destination(facts)} was reset."
    )


def _answer_address_denied(facts: Facts) -> str:
    return (
        f"The DNS answer for {facts.host} in sandbox {facts.runtime} pointed at"
        f" {facts.address}, a loopback, link-local or host address, so runtad removed it"
        " from the answer and did not allow it. Set denied_answer_networks in runtad.toml"
        " if this answer is expected."
    )


_BUILDERS: dict[Reason, Callable[[Facts], str]] = {
    Reason.HOST_NOT_ALLOWED: _host_not_allowed,
    Reason.DNS_NAME_NOT_ALLOWED: _dns_name_not_allowed,
    Reason.DIRECT_IP_NOT_ALLOWED: _direct_ip_not_allowed,
    Reason.ADDRESS_NOT_IN_SET: _address_not_in_set,
    Reason.POLICY_NOT_LOADED: _policy_not_loaded,
    Reason.FLOW_REVOKED: _flow_revoked,
    Reason.DAEMON_DOWN: _daemon_down,
    Reason.SNI_NOT_ALLOWED: _named_host_not_allowed("TLS SNI"),
    Reason.SNI_MISSING: _no_host_named("its TLS ClientHello names no server (SNI)"),
    Reason.SNI_ADDRESS_MISMATCH: _address_mismatch,
    Reason.ECH_NOT_ALLOWED: _ech_not_allowed,
    Reason.HOST_HEADER_NOT_ALLOWED: _named_host_not_allowed("HTTP Host"),
    Reason.HOST_MISSING: _no_host_named("its HTTP request has no Host field"),
    Reason.HOST_MISMATCH: _host_mismatch,
    Reason.HOST_ADDRESS_MISMATCH: _address_mismatch,
    Reason.RESOLVE_FAILED: _resolve_failed,
    Reason.FIRST_FLIGHT_INVALID: _first_flight_invalid,
    Reason.FIRST_FLIGHT_TIMEOUT: _first_flight_timeout,
    Reason.GATEWAY_BUSY: _gateway_busy,
    Reason.ANSWER_ADDRESS_DENIED: _answer_address_denied,
    Reason.ALLOWED_BY_POLICY: _allowed_by_policy,
    Reason.DNS_ALLOWED: _dns_allowed,
    Reason.ENFORCEMENT_DISABLED: _enforcement_disabled,
    Reason.SET_UPDATE_FAILED: _set_update_failed,
    Reason.UPSTREAM_FAILED: _upstream_failed,
    Reason.EVENTS_SUPPRESSED: _events_suppressed,
    Reason.EVENTS_LOST: _events_lost,
    Reason.EVENTS_DROPPED: _events_dropped,
}
