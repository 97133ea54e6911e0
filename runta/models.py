"""Typed views of the JSON documents in docs/api.md.

Each model is a frozen dataclass with ``from_json`` (decoded JSON to model) and
``to_json`` (model back to the JSON shape runtad sent). Times become aware datetimes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Self, TypeVar

from runta.errors import InvalidInspectModeError

T = TypeVar("T")

# The gateway's inspection modes (docs/api.md, "Egress policy"): "first" checks TCP 80/443
# connections to addresses outside the kernel sets and learns allowed ones, "all" checks
# every TCP 80/443 connection and learns nothing for those ports.
INSPECT_MODES = ("first", "all")


def check_inspect_mode(value: object) -> str:
    """Return ``value`` if it is one of INSPECT_MODES, else raise InvalidInspectModeError."""
    if not isinstance(value, str) or value not in INSPECT_MODES:
        raise InvalidInspectModeError(value, INSPECT_MODES)
    return value


def parse_time(text: str | None) -> datetime | None:
    """Parse an API timestamp (``2026-12-04T20:10:00.000Z``) into an aware datetime.

    A timestamp without an offset is taken as UTC, the only zone runtad writes.
    """
    if text is None:
        return None
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed


def format_time(value: datetime | None) -> str | None:
    """Format a datetime the way runtad does: UTC, milliseconds, ``Z`` suffix."""
    if value is None:
        return None
    text = value.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.removesuffix("+00:00") + "Z"


@dataclass(frozen=True)
class EgressState:
    """Enforcement switch and policy version, as embedded in a Runtime document."""

    enabled: bool
    version: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EgressState:
        return cls(enabled=bool(data["enabled"]), version=int(data["version"]))

    def to_json(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "version": self.version}


@dataclass(frozen=True)
class RuntimeInfo:
    """A runtime (sandbox) as the API describes it, without a client attached."""

    name: str
    netns: str
    adopted: bool
    created_at: datetime | None
    host_interface: str | None
    addresses: tuple[str, ...]
    gateway: tuple[str, ...]
    # None for a sandbox that failed to start: see state and error.
    egress_state: EgressState | None
    state: str = "running"
    error: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(**runtime_fields_from_json(data))

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "name": self.name,
            "netns": self.netns,
            "adopted": self.adopted,
            "created_at": format_time(self.created_at),
            "host_interface": self.host_interface,
            "addresses": list(self.addresses),
            "gateway": list(self.gateway),
            "egress": self.egress_state.to_json() if self.egress_state is not None else None,
            "state": self.state,
        }
        if self.error is not None:
            document["error"] = self.error
        return document


def runtime_fields_from_json(data: Mapping[str, Any]) -> dict[str, Any]:
    """Return the RuntimeInfo constructor arguments for a Runtime document."""
    return {
        "name": data["name"],
        "netns": data["netns"],
        "adopted": bool(data.get("adopted", False)),
        "created_at": parse_time(data.get("created_at")),
        "host_interface": data.get("host_interface"),
        "addresses": tuple(data.get("addresses") or ()),
        "gateway": tuple(data.get("gateway") or ()),
        "egress_state": EgressState.from_json(data["egress"]) if data.get("egress") else None,
        "state": data.get("state", "running"),
        "error": data.get("error"),
    }


@dataclass(frozen=True)
class EgressAddress:
    """One address in a kernel set, with its expiry and how it got there."""

    address: str
    expires_at: datetime | None
    source: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EgressAddress:
        return cls(
            address=data["address"],
            expires_at=parse_time(data.get("expires_at")),
            source=data.get("source"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "expires_at": format_time(self.expires_at),
            "source": self.source,
        }


@dataclass(frozen=True)
class EgressEntry:
    """One allowlist entry: kind ``exact`` or ``wildcard``, status and current addresses."""

    host: str
    kind: str
    status: str
    addresses: tuple[EgressAddress, ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EgressEntry:
        return cls(
            host=data["host"],
            kind=data["kind"],
            status=data["status"],
            addresses=tuple(EgressAddress.from_json(a) for a in data.get("addresses") or ()),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "kind": self.kind,
            "status": self.status,
            "addresses": [a.to_json() for a in self.addresses],
        }


class HostList(list[str]):
    """Allowed hosts of a runtime, printed as a plain list.

    ``enabled`` and ``version`` come from the same response, so ``version`` can be
    passed as ``if_version=`` to a following write.
    """

    def __init__(self, hosts: Sequence[str] = (), *, enabled: bool = False, version: int = 0):
        super().__init__(hosts)
        self.enabled = enabled
        self.version = version


@dataclass(frozen=True)
class Egress:
    """The full egress document of a runtime: policy, version and resolved entries."""

    enabled: bool
    allowed_hosts: tuple[str, ...]
    version: int
    entries: tuple[EgressEntry, ...] = ()
    # Gateway inspection: "first" (learn allowed addresses into the kernel fast path) or
    # "all" (strict: every TCP 80/443 connection goes through the gateway).
    inspect: str = "first"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Egress:
        return cls(
            enabled=bool(data["enabled"]),
            allowed_hosts=tuple(data["allowed_hosts"]),
            version=int(data["version"]),
            entries=tuple(EgressEntry.from_json(e) for e in data.get("entries") or ()),
            inspect=str(data.get("inspect", "first")),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "allowed_hosts": list(self.allowed_hosts),
            "version": self.version,
            "inspect": self.inspect,
            "entries": [e.to_json() for e in self.entries],
        }

    def to_host_list(self) -> HostList:
        return HostList(self.allowed_hosts, enabled=self.enabled, version=self.version)

    def to_policy(self) -> EgressPolicy:
        return EgressPolicy(
            enabled=self.enabled, allowed_hosts=self.allowed_hosts, inspect=self.inspect
        )


@dataclass(frozen=True)
class EgressPolicy:
    """The writable part of an egress document: the switch, the allowed hosts and ``inspect``.

    ``inspect`` is "first" or "all" (see INSPECT_MODES). None leaves the runtime's mode as
    it is when the policy is written.
    """

    enabled: bool = False
    allowed_hosts: Sequence[str] = ()
    inspect: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.allowed_hosts, str):
            raise TypeError(
                f"allowed_hosts must be a list of host names, not the string "
                f"{self.allowed_hosts!r}: write allowed_hosts=[{self.allowed_hosts!r}]"
            )
        # Stored as a tuple so that the frozen policy cannot change through the caller's list.
        object.__setattr__(self, "allowed_hosts", tuple(self.allowed_hosts))
        if self.inspect is not None:
            check_inspect_mode(self.inspect)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EgressPolicy:
        return cls(
            enabled=bool(data["enabled"]),
            allowed_hosts=tuple(data["allowed_hosts"]),
            inspect=data.get("inspect"),
        )

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "enabled": self.enabled,
            "allowed_hosts": list(self.allowed_hosts),
        }
        if self.inspect is not None:
            document["inspect"] = self.inspect
        return document


@dataclass(frozen=True)
class EgressEvent:
    """One observed outbound attempt and its verdict, with ``count`` > 1 for repeats."""

    action: str
    host: str | None
    path: str | None
    reason: str | None
    address: str | None
    port: int | None
    protocol: str | None
    time: datetime | None
    count: int = 1
    runtime: str | None = None
    # The sentence runtad wrote for the event: what happened and, for a denial, the fix.
    message: str | None = None
    source: str | None = None  # dns, kernel, gateway or daemon
    id: int | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EgressEvent:
        return cls(
            action=data["action"],
            host=data.get("host"),
            path=data.get("path"),
            reason=data.get("reason"),
            address=data.get("address"),
            port=data.get("port"),
            protocol=data.get("protocol"),
            time=parse_time(data.get("time")),
            count=int(data.get("count", 1)),
            runtime=data.get("runtime"),
            message=data.get("message"),
            source=data.get("source"),
            id=data.get("id"),
        )

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "action": self.action,
            "host": self.host,
            "path": self.path,
            "reason": self.reason,
            "address": self.address,
            "port": self.port,
            "protocol": self.protocol,
            "time": format_time(self.time),
            "count": self.count,
        }
        for key in ("runtime", "message", "source", "id"):
            value = getattr(self, key)
            if value is not None:
                document[key] = value
        return document


@dataclass(frozen=True)
class Audit:
    """One audit record, whose ``payload`` is an egress event when ``category`` is egress."""

    id: str | int
    time: datetime | None
    runtime: str | None
    category: str
    payload: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Audit:
        return cls(
            id=data["id"],
            time=parse_time(data.get("time")),
            runtime=data.get("runtime"),
            category=data["category"],
            payload=dict(data.get("payload") or {}),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": format_time(self.time),
            "runtime": self.runtime,
            "category": self.category,
            "payload": dict(self.payload),
        }


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list response: iterate it for the items, pass ``next`` as ``after=``."""

    items: tuple[T, ...]
    next: str | None = None

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> T:
        return self.items[index]


@dataclass(frozen=True)
class Status:
    """runtad's version, uptime in seconds, runtime count and upstream DNS servers."""

    version: str
    uptime_seconds: float
    runtimes: int
    upstream_dns: tuple[str, ...]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Status:
        return cls(
            version=data["version"],
            uptime_seconds=float(data["uptime_seconds"]),
            runtimes=int(data["runtimes"]),
            upstream_dns=tuple(data.get("upstream_dns") or ()),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "uptime_seconds": self.uptime_seconds,
            "runtimes": self.runtimes,
            "upstream_dns": list(self.upstream_dns),
        }
