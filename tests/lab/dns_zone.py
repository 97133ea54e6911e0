"""Zone data of the lab's test DNS server: the JSON document and its parsed form.

The lab edits a ZoneDocument and writes it as JSON; the server process parses the
same JSON into a Zone. The document shape is::

    {"negative_ttl": 30, "mode": "answer", "delay_ms": 0,
     "names": {"e1.cdn.test": {
         "owner": "E1.CDN.test",
         "mode": "answer", "delay_ms": 0,
         "records": {"A": [["192.0.2.20", 300]]},
         "rotations": {"A": {"pool": ["192.0.2.30", "192.0.2.31"], "per_answer": 1,
                             "ttl": 30}}}}}

Keys of "names" are lowercase without the trailing dot. "owner" keeps the case the
test configured, and responses carry it. Record values use zone-file presentation
format, so any type dnspython parses works (TXT values are quoted strings).
A name may be a wildcard such as ``*.pythonhosted.org``, which matches every name
below it that has no entry of its own.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from tests.lab.errors import LabError

MODES = ("answer", "servfail", "drop", "refused")
DEFAULT_NEGATIVE_TTL = 30

RecordValue = str | tuple[str, int]


class ZoneValueError(LabError):
    """A record, rotation or mode given to the test DNS server is invalid."""

    def __init__(self, name: str, rtype: str, value: object, reason: str) -> None:
        self.name = name
        self.rtype = rtype
        self.value = value
        super().__init__(f"invalid {rtype} data for {name!r}: {value!r}: {reason}")


def name_key(name: str) -> str:
    """Return the lookup key of ``name``: lowercase, IDNA-encoded, no trailing dot."""
    return dns.name.from_text(name).to_text(omit_final_dot=True).lower()


def _parse_rdata(name: str, rtype: str, value: str) -> dns.rdata.Rdata:
    try:
        # Names in values are relative to the root, so "edge.cdn.test" needs no final dot.
        return dns.rdata.from_text(
            dns.rdataclass.IN,
            dns.rdatatype.from_text(rtype),
            value,
            origin=dns.name.root,
            relativize=False,
        )
    except (dns.exception.DNSException, ValueError) as exc:
        raise ZoneValueError(name, rtype, value, str(exc)) from exc


def _check_mode(name: str, mode: str, delay_ms: int) -> None:
    if mode not in MODES:
        raise ZoneValueError(name, "mode", mode, f"mode must be one of {', '.join(MODES)}")
    if not 0 <= delay_ms <= 60_000:
        raise ZoneValueError(name, "delay_ms", delay_ms, "delay must be 0 to 60000 ms")


def _drop_conflicting_types(entry: dict[str, Any], rtype: str) -> None:
    """Remove the data that may not coexist with new ``rtype`` data at the same name."""
    for section in ("records", "rotations"):
        for existing in list(entry[section]):
            if existing != rtype and "CNAME" in (existing, rtype):
                del entry[section][existing]


class ZoneDocument:
    """The editable JSON zone document that the lab writes for the server."""

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        self.data: dict[str, Any] = data or {
            "negative_ttl": DEFAULT_NEGATIVE_TTL,
            "mode": "answer",
            "delay_ms": 0,
            "names": {},
        }

    @classmethod
    def from_json(cls, text: str | bytes) -> ZoneDocument:
        return cls(json.loads(text))

    def to_json(self) -> bytes:
        return json.dumps(self.data, indent=1, sort_keys=True).encode()

    def _entry(self, name: str, *, keep_owner: bool = False) -> dict[str, Any]:
        """Return the entry of ``name``, which then owns records in the case given here."""
        entry: dict[str, Any] = self.data["names"].setdefault(name_key(name), {})
        owner = dns.name.from_text(name).to_text()
        if keep_owner:
            entry.setdefault("owner", owner)
        else:
            entry["owner"] = owner
        entry.setdefault("records", {})
        entry.setdefault("rotations", {})
        return entry

    def set_records(
        self, name: str, rtype: str, values: Sequence[RecordValue], ttl: int = 300
    ) -> None:
        """Replace the ``rtype`` records of ``name``. An empty ``values`` removes them.

        A value is presentation-format text, or a (text, ttl) pair to give that one
        record its own TTL. A CNAME cannot coexist with other data (RFC 1034, section
        3.6.2), so setting a CNAME removes the name's other types and setting another
        type removes its CNAME.
        """
        rtype = rtype.upper()
        records: list[list[Any]] = []
        for value in values:
            text, record_ttl = (value, ttl) if isinstance(value, str) else value
            _parse_rdata(name, rtype, text)
            records.append([text, int(record_ttl)])

        entry = self._entry(name)
        entry["rotations"].pop(rtype, None)
        if records:
            _drop_conflicting_types(entry, rtype)
            entry["records"][rtype] = records
        else:
            entry["records"].pop(rtype, None)

    def set_rotation(
        self, name: str, pool: Sequence[str], per_answer: int, ttl: int, rtype: str | None = None
    ) -> None:
        """Rotate ``name`` through ``pool``: each query gets the next ``per_answer`` addresses.

        ``rtype`` defaults to A or AAAA after the pool's address family.
        """
        if not pool:
            raise ZoneValueError(name, rtype or "A", list(pool), "the pool is empty")
        if not 1 <= per_answer <= len(pool):
            raise ZoneValueError(
                name, rtype or "A", per_answer, f"per_answer must be 1 to {len(pool)}"
            )
        versions = {ipaddress.ip_address(address).version for address in pool}
        if rtype is None:
            if len(versions) != 1:
                raise ZoneValueError(name, "A/AAAA", list(pool), "mixes IPv4 and IPv6")
            rtype = "A" if versions == {4} else "AAAA"
        rtype = rtype.upper()
        for address in pool:
            _parse_rdata(name, rtype, address)

        entry = self._entry(name)
        entry["records"].pop(rtype, None)
        _drop_conflicting_types(entry, rtype)
        entry["rotations"][rtype] = {
            "pool": list(pool),
            "per_answer": per_answer,
            "ttl": int(ttl),
        }

    def set_mode(self, name: str, mode: str, delay_ms: int = 0) -> None:
        """Set how queries for ``name`` are handled, overriding the global mode."""
        _check_mode(name, mode, delay_ms)
        entry = self._entry(name, keep_owner=True)
        entry["mode"] = mode
        entry["delay_ms"] = delay_ms

    def set_global_mode(self, mode: str, delay_ms: int = 0) -> None:
        """Set how queries for names without a mode of their own are handled."""
        _check_mode("(every name)", mode, delay_ms)
        self.data["mode"] = mode
        self.data["delay_ms"] = delay_ms

    def remove(self, name: str) -> None:
        """Remove every record, rotation and mode of ``name``, so it returns NXDOMAIN."""
        self.data["names"].pop(name_key(name), None)


@dataclass(frozen=True)
class Rotation:
    pool: tuple[dns.rdata.Rdata, ...]
    per_answer: int
    ttl: int


@dataclass
class ZoneEntry:
    """The parsed data of one owner name."""

    owner: dns.name.Name
    records: dict[dns.rdatatype.RdataType, list[tuple[dns.rdata.Rdata, int]]] = field(
        default_factory=dict
    )
    rotations: dict[dns.rdatatype.RdataType, Rotation] = field(default_factory=dict)
    mode: str | None = None
    delay_ms: int | None = None

    @property
    def has_data(self) -> bool:
        return bool(self.records or self.rotations)

    @property
    def rdtypes(self) -> list[dns.rdatatype.RdataType]:
        return sorted({*self.records, *self.rotations})


def _parse_entry(key: str, raw: dict[str, Any]) -> ZoneEntry:
    owner_text = raw.get("owner", key)
    entry = ZoneEntry(owner=dns.name.from_text(owner_text))
    for rtype, records in raw.get("records", {}).items():
        rdtype = dns.rdatatype.from_text(rtype)
        entry.records[rdtype] = [
            (_parse_rdata(owner_text, rtype, text), int(ttl)) for text, ttl in records
        ]
    for rtype, rotation in raw.get("rotations", {}).items():
        entry.rotations[dns.rdatatype.from_text(rtype)] = Rotation(
            pool=tuple(_parse_rdata(owner_text, rtype, text) for text in rotation["pool"]),
            per_answer=int(rotation["per_answer"]),
            ttl=int(rotation["ttl"]),
        )
    entry.mode = raw.get("mode")
    entry.delay_ms = raw.get("delay_ms")
    return entry


@dataclass
class Zone:
    """The parsed zone that the server builds responses from."""

    entries: dict[str, ZoneEntry]
    negative_ttl: int = DEFAULT_NEGATIVE_TTL
    mode: str = "answer"
    delay_ms: int = 0

    @classmethod
    def from_document(cls, document: ZoneDocument) -> Zone:
        data = document.data
        entries = {key: _parse_entry(key, raw) for key, raw in data.get("names", {}).items()}
        return cls(
            entries=entries,
            negative_ttl=int(data.get("negative_ttl", DEFAULT_NEGATIVE_TTL)),
            mode=data.get("mode", "answer"),
            delay_ms=int(data.get("delay_ms", 0)),
        )

    def _candidates(self, qname: dns.name.Name) -> list[tuple[str, bool]]:
        """Return the keys that could answer ``qname``: exact first, then wildcards upward."""
        key = qname.to_text(omit_final_dot=True).lower()
        labels = [] if key == "@" or key == "" else key.split(".")
        candidates = [(key, False)]
        for start in range(1, len(labels) + 1):
            parent = ".".join(labels[start:])
            candidates.append((f"*.{parent}" if parent else "*", True))
        return candidates

    def find(self, qname: dns.name.Name) -> tuple[ZoneEntry, bool] | None:
        """Return the entry with data for ``qname`` and whether a wildcard matched."""
        for key, is_wildcard in self._candidates(qname):
            entry = self.entries.get(key)
            if entry is not None and entry.has_data:
                return entry, is_wildcard
        return None

    def mode_for(self, qname: dns.name.Name) -> tuple[str, int]:
        """Return (mode, delay in ms) for ``qname``.

        The closest entry decides: the name's own, else the nearest wildcard above it.
        When that entry has no mode, or no entry matches, the global mode applies.
        """
        for key, _ in self._candidates(qname):
            entry = self.entries.get(key)
            if entry is None:
                continue
            if entry.mode is not None:
                return entry.mode, entry.delay_ms or 0
            break
        return self.mode, self.delay_ms
