"""The gateway's verdict on one connection, from its first flight and original destination.

A TLS connection is allowed when its SNI matches the policy, with the same HostMatcher
and canonical_name as DNS, and the destination is one of the addresses that name
resolves to. Naming an allowed host therefore does not open an arbitrary address. Plain HTTP is judged
the same way by its Host field, or by the host of an absolute-form target, which must
then agree with Host. A first flight that names no host (no SNI, no Host, another
protocol) is allowed only to an address the sandbox's sets already allow, as the
kernel would. With enforcement off every connection is allowed.

ECH: the SNI of a ClientHello that offers encrypted_client_hello is the outer, public
name. It is checked like any SNI, which also lets GREASE ECH (a placeholder some
browsers send) through when the name is allowed. An outer name that the policy does not
allow is denied as ech_not_allowed, whatever the destination.

NOTE: only the first request of a plain HTTP connection is read. Later requests on a
kept-alive connection, and the Host inside TLS, are relayed unchecked, so a server
that hosts an allowed name can serve other names on that connection (domain fronting).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from ..hosts import canonical_name
from .addresscache import NameResolutionError
from .clienthello import ClientHello
from .http1 import HttpRequest

INSPECT_FIRST = "first"
INSPECT_ALL = "all"

# Reason codes of deny decisions, stable for audit records.
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

DENY_REASONS = frozenset({
    SNI_NOT_ALLOWED, SNI_MISSING, SNI_ADDRESS_MISMATCH, ECH_NOT_ALLOWED,
    HOST_HEADER_NOT_ALLOWED, HOST_MISSING, HOST_MISMATCH, HOST_ADDRESS_MISMATCH,
    RESOLVE_FAILED, FIRST_FLIGHT_INVALID, FIRST_FLIGHT_TIMEOUT, GATEWAY_BUSY,
})  # fmt: skip


class GatewayPolicy(Protocol):
    """The sandbox's side of the gateway: its policy, name lookups and allow sets."""

    name: str

    @property
    def enforced(self) -> bool: ...

    @property
    def inspect(self) -> str:
        """INSPECT_FIRST or INSPECT_ALL (strict: every TCP 80/443 flow, nothing learned)."""
        ...

    def judge(self, host: str) -> str | None:
        """Return the pattern of the rule that allows the canonical host, or None."""
        ...

    async def addresses_for(self, host: str, *, fresh: bool = False) -> Mapping[str, int]:
        """Return address → TTL seconds of host; raise NameResolutionError if it has none."""
        ...

    async def learn_sni(self, pattern: str, address: str, ttl: int) -> None:
        """Add address to the sandbox's sets for ttl seconds, owned by pattern (source sni)."""
        ...

    def is_allowed_address(self, address: str) -> bool: ...


@dataclass(frozen=True)
class FirstFlight:
    """The bytes a client sent before the gateway decided, and their parse.

    protocol is "tls", "http" or None when the bytes are neither. invalid is the reason
    the first flight is unusable, None when hello or request is set. timed_out is True
    when the client sent too little before the deadline.
    """

    data: bytes
    protocol: str | None
    hello: ClientHello | None = None
    request: HttpRequest | None = None
    invalid: str | None = None
    timed_out: bool = False


@dataclass(frozen=True)
class Verdict:
    """The decision on one connection, with what the audit record shows."""

    allowed: bool
    reason: str | None = None  # one of DENY_REASONS when denied
    host: str | None = None  # canonical name, or the raw text when it is not a valid name
    path: str | None = None  # HTTP only
    pattern: str | None = None  # the rule that allowed the host
    target_host: str | None = None  # HTTP absolute-form host, when it is not the Host field
    ech: bool = False
    detail: str | None = None
    learn_ttl: int | None = None  # learn the destination for this many seconds


async def decide(policy: GatewayPolicy, flight: FirstFlight, destination: str) -> Verdict:
    """Judge a connection to destination (a normalised address) by its first flight."""
    if flight.hello is not None:
        return await _decide_tls(policy, flight.hello, destination)
    if flight.request is not None:
        return await _decide_http(policy, flight.request, destination)
    if not policy.enforced:
        return Verdict(True, detail=flight.invalid)
    if flight.timed_out:
        return _by_address(policy, destination, Verdict(False, FIRST_FLIGHT_TIMEOUT))
    if flight.protocol is None:
        # Neither TLS nor HTTP: a protocol that names no host, allowed where the kernel
        # would allow it.
        return _by_address(policy, destination, Verdict(False, FIRST_FLIGHT_INVALID, detail=flight.invalid))
    return Verdict(False, FIRST_FLIGHT_INVALID, detail=flight.invalid)


async def _decide_tls(policy: GatewayPolicy, hello: ClientHello, destination: str) -> Verdict:
    raw = hello.server_name
    host = canonical_name(raw) if raw is not None else None
    reported = host or (raw.lower() if raw is not None else None)
    if not policy.enforced:
        return Verdict(True, host=reported, ech=hello.has_ech)
    if raw is None:
        reason = ECH_NOT_ALLOWED if hello.has_ech else SNI_MISSING
        return _by_address(policy, destination, Verdict(False, reason, ech=hello.has_ech))

    pattern = policy.judge(host) if host is not None else None
    if pattern is None:
        reason = ECH_NOT_ALLOWED if hello.has_ech else SNI_NOT_ALLOWED
        return Verdict(False, reason, host=reported, ech=hello.has_ech)
    assert host is not None
    allowed = Verdict(True, host=host, pattern=pattern, ech=hello.has_ech)
    return await _check_address(policy, allowed, destination, SNI_ADDRESS_MISMATCH)


async def _decide_http(policy: GatewayPolicy, request: HttpRequest, destination: str) -> Verdict:
    host = _canonical_or_raw(request.host)
    target_host = _canonical_or_raw(request.target_host)
    named = target_host if target_host is not None else host
    if not policy.enforced:
        return Verdict(True, host=named, path=request.path)
    if target_host is not None and host is not None and target_host != host:
        return Verdict(False, HOST_MISMATCH, host=host, path=request.path, target_host=target_host)
    if named is None:
        return _by_address(policy, destination, Verdict(False, HOST_MISSING, path=request.path))

    canonical = canonical_name(named)
    pattern = policy.judge(canonical) if canonical is not None else None
    if pattern is None:
        return Verdict(False, HOST_HEADER_NOT_ALLOWED, host=named, path=request.path)
    allowed = Verdict(True, host=canonical, path=request.path, pattern=pattern)
    return await _check_address(policy, allowed, destination, HOST_ADDRESS_MISMATCH)


async def _check_address(policy: GatewayPolicy, allowed: Verdict, destination: str, mismatch: str) -> Verdict:
    """Allow only if destination is among the host's addresses, looked up again on a miss."""
    assert allowed.host is not None
    try:
        addresses = await policy.addresses_for(allowed.host)
        if destination not in addresses:
            # The client may have a newer DNS answer than the cache (rotating pools).
            addresses = await policy.addresses_for(allowed.host, fresh=True)
    except NameResolutionError as error:
        return _denied(allowed, RESOLVE_FAILED, error.detail)
    ttl = addresses.get(destination)
    if ttl is None:
        return _denied(allowed, mismatch, f"{allowed.host} resolves to {', '.join(sorted(addresses))}")
    learn_ttl = ttl if policy.inspect == INSPECT_FIRST else None
    return Verdict(
        True, host=allowed.host, path=allowed.path, pattern=allowed.pattern, ech=allowed.ech,
        learn_ttl=learn_ttl,
    )  # fmt: skip


def _by_address(policy: GatewayPolicy, destination: str, denied: Verdict) -> Verdict:
    """Allow a connection that names no host if its destination is allowed already."""
    if policy.is_allowed_address(destination):
        return Verdict(True, path=denied.path, ech=denied.ech, detail=f"no host named; {denied.reason}")
    return denied


def _denied(allowed: Verdict, reason: str, detail: str) -> Verdict:
    return Verdict(
        False, reason, host=allowed.host, path=allowed.path, ech=allowed.ech, detail=detail
    )


def _canonical_or_raw(name: str | None) -> str | None:
    if name is None:
        return None
    return canonical_name(name) or name.lower()
