"""Pure answer building for the test DNS server: query in, response message or wire out."""

from __future__ import annotations

from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.renderer
import dns.rrset

from tests.lab.dns_zone import Rotation, Zone, ZoneEntry

# Longest CNAME chain followed inside the zone. Resolvers give up far earlier.
MAX_CHAIN = 16

# Classic DNS over UDP without EDNS carries at most 512 bytes (RFC 1035, section 4.2.1).
CLASSIC_UDP_SIZE = 512
TCP_MAX_SIZE = 65535

# An OPT RR without options: root name (1), type (2), class (2), TTL (4), rdlength (2).
OPT_RR_SIZE = 11

SOA_TEXT = "ns.lab.test. hostmaster.lab.test. 1 3600 600 86400 {negative_ttl}"


class Rotator:
    """Hands out consecutive slices of each rotation pool, one slice per query."""

    def __init__(self) -> None:
        self._state: dict[tuple[str, int], tuple[Rotation, int]] = {}

    def take(self, key: str, rdtype: int, rotation: Rotation) -> list[dns.rdata.Rdata]:
        state_key = (key, rdtype)
        previous, counter = self._state.get(state_key, (rotation, 0))
        if previous != rotation:
            counter = 0
        self._state[state_key] = (rotation, counter + 1)

        size = len(rotation.pool)
        start = (counter * rotation.per_answer) % size
        return [rotation.pool[(start + offset) % size] for offset in range(rotation.per_answer)]


def _entry_rrsets(
    entry: ZoneEntry, rdtype: int, owner: dns.name.Name, rotator: Rotator
) -> list[dns.rrset.RRset]:
    """Return the RRsets of one type, one RRset per distinct TTL so each record keeps its own."""
    rotation = entry.rotations.get(dns.rdatatype.RdataType(rdtype))
    if rotation is not None:
        key = entry.owner.to_text().lower()
        picked = rotator.take(key, rdtype, rotation)
        return [dns.rrset.from_rdata_list(owner, rotation.ttl, picked)]

    by_ttl: dict[int, list[dns.rdata.Rdata]] = {}
    for rdata, ttl in entry.records.get(dns.rdatatype.RdataType(rdtype), []):
        by_ttl.setdefault(ttl, []).append(rdata)
    return [dns.rrset.from_rdata_list(owner, ttl, rdatas) for ttl, rdatas in by_ttl.items()]


def _negative_soa(zone: Zone) -> dns.rrset.RRset:
    # RFC 2308: the SOA in the authority section carries the negative caching TTL.
    return dns.rrset.from_text(
        dns.name.root,
        zone.negative_ttl,
        dns.rdataclass.IN,
        dns.rdatatype.SOA,
        SOA_TEXT.format(negative_ttl=zone.negative_ttl),
    )


def build_error_response(query: dns.message.Message, rcode: dns.rcode.Rcode) -> dns.message.Message:
    response = dns.message.make_response(query, recursion_available=True)
    response.set_rcode(rcode)
    return response


def build_response(zone: Zone, query: dns.message.Message, rotator: Rotator) -> dns.message.Message:
    """Build the response to ``query`` from ``zone``, following CNAME chains inside the zone.

    Every record of the chain goes into the answer section with its owner name in the
    configured case. An unknown name gives NXDOMAIN and a name without the requested
    type gives NODATA, both with the SOA in the authority section.
    """
    if len(query.question) != 1:
        return build_error_response(query, dns.rcode.FORMERR)
    question = query.question[0]
    if question.rdclass != dns.rdataclass.IN:
        return build_error_response(query, dns.rcode.REFUSED)

    response = dns.message.make_response(query, recursion_available=True)
    response.flags |= dns.flags.AA
    rdtype = question.rdtype
    name = question.name
    seen: set[dns.name.Name] = set()

    for _ in range(MAX_CHAIN):
        seen.add(name)
        found = zone.find(name)
        if found is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
            response.authority.append(_negative_soa(zone))
            return response
        entry, is_wildcard = found
        owner = name if is_wildcard else entry.owner

        if rdtype == dns.rdatatype.ANY:
            for each_type in entry.rdtypes:
                response.answer.extend(_entry_rrsets(entry, each_type, owner, rotator))
            return response

        rrsets = _entry_rrsets(entry, rdtype, owner, rotator)
        if rrsets:
            response.answer.extend(rrsets)
            return response

        cname = entry.records.get(dns.rdatatype.CNAME)
        if not cname:
            response.authority.append(_negative_soa(zone))
            return response
        response.answer.extend(_entry_rrsets(entry, dns.rdatatype.CNAME, owner, rotator))
        target: dns.name.Name = cname[0][0].target  # type: ignore[attr-defined]
        if target in seen:
            # A CNAME loop: return the chain as far as it goes, as servers do.
            return response
        name = target
    return response


def max_response_size(query: dns.message.Message, transport: str) -> int:
    """Return the largest response ``query`` may get: 512 bytes over UDP without EDNS,
    the advertised EDNS payload size (at least 512) over UDP with EDNS, 65535 over TCP.
    """
    if transport == "tcp":
        return TCP_MAX_SIZE
    if query.edns >= 0:
        return max(CLASSIC_UDP_SIZE, min(query.payload, TCP_MAX_SIZE))
    return CLASSIC_UDP_SIZE


class _ExactCaseCompression(dict[Any, int]):
    """Compression table keyed by the labels as sent, not case-folded.

    dnspython's table compares names case-insensitively, so ``E1.CDN.test`` after a
    CNAME target ``e1.cdn.test`` would be written as a pointer and read back in
    lowercase. Keying by the raw labels keeps every owner name in its configured case.
    """

    @staticmethod
    def _key(name: Any) -> Any:
        return name if isinstance(name, tuple) else tuple(name.labels)

    def get(self, name: Any, default: Any = None) -> Any:
        return super().get(self._key(name), default)

    def __setitem__(self, name: Any, offset: int) -> None:
        super().__setitem__(self._key(name), offset)

    def __delitem__(self, name: Any) -> None:
        super().__delitem__(self._key(name))


def to_wire(message: dns.message.Message, max_size: int) -> bytes:
    """Render ``message`` in at most ``max_size`` bytes with exact-case name compression.

    When a section does not fit, the RRset that overflowed and all after it are
    dropped and TC is set (RFC 2181, section 9), except for the additional section,
    whose loss needs no TC.
    """
    renderer = dns.renderer.Renderer(message.id, message.flags, max_size)
    renderer.compress = _ExactCaseCompression()
    opt_reserve = OPT_RR_SIZE if message.opt is not None else 0
    renderer.reserve(opt_reserve)

    sections = (
        (dns.renderer.ANSWER, message.answer),
        (dns.renderer.AUTHORITY, message.authority),
        (dns.renderer.ADDITIONAL, message.additional),
    )
    try:
        for question in message.question:
            renderer.add_question(question.name, question.rdtype, question.rdclass)
        for section, rrsets in sections:
            for rrset in rrsets:
                # Records keep the configured order, and rotation provides the variety.
                renderer.add_rrset(section, rrset, want_shuffle=False)
    except dns.exception.TooBig:
        if renderer.section < dns.renderer.ADDITIONAL:
            renderer.flags |= dns.flags.TC

    renderer.release_reserved()
    if message.opt is not None:
        renderer.add_opt(message.opt, 0, opt_reserve, 0)
    renderer.write_header()
    wire: bytes = renderer.get_wire()
    return wire
