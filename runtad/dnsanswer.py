"""Pure helpers for DNS answers: the CNAME chain, its addresses, and synthesised replies."""

from __future__ import annotations

from dataclasses import dataclass

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype

ADDRESS_TYPES = (dns.rdatatype.A, dns.rdatatype.AAAA)


@dataclass(frozen=True)
class ChainAddresses:
    """Addresses that answer a query name, each with the TTL it may be trusted for."""

    names: frozenset[str]  # the query name and every CNAME target reached from it
    addresses: tuple[tuple[str, int], ...]  # (address, seconds), smallest TTL along the chain
    has_foreign: bool  # the message carries A/AAAA records for names outside the chain


def chain_addresses(response: dns.message.Message, qname: dns.name.Name) -> ChainAddresses:
    """Follow the CNAME chain from qname inside the answer section, case-insensitively.

    Names compare case-insensitively in dnspython. The TTL of an address is the
    smallest TTL on the path from qname to it, so no element outlives a link of the
    chain that named it.
    """
    ttl_to: dict[dns.name.Name, int] = {qname: 2**31 - 1}
    changed = True
    while changed:
        changed = False
        for rrset in response.answer:
            if rrset.rdtype != dns.rdatatype.CNAME or rrset.name not in ttl_to:
                continue
            target = rrset[0].target
            ttl = min(ttl_to[rrset.name], rrset.ttl)
            if target not in ttl_to or ttl_to[target] < ttl:
                ttl_to[target] = ttl
                changed = True

    addresses: list[tuple[str, int]] = []
    has_foreign = False
    for section in (response.answer, response.additional):
        for rrset in section:
            if rrset.rdtype not in ADDRESS_TYPES:
                continue
            if section is response.answer and rrset.name in ttl_to:
                ttl = min(ttl_to[rrset.name], rrset.ttl)
                addresses.extend((rdata.address, ttl) for rdata in rrset)
            else:
                has_foreign = True
    names = frozenset(name.to_text(omit_final_dot=True).lower() for name in ttl_to)
    return ChainAddresses(names, tuple(addresses), has_foreign)


def strip_foreign_addresses(response: dns.message.Message, qname: dns.name.Name) -> bytes:
    """Re-render the response without A/AAAA records that the chain from qname does not reach.

    The sandbox then never receives an address that was not put in its sets.
    """
    chain = chain_addresses(response, qname)
    keep = {dns.name.from_text(name) for name in chain.names}
    response.answer = [
        rrset for rrset in response.answer if rrset.rdtype not in ADDRESS_TYPES or rrset.name in keep
    ]
    response.additional = [rrset for rrset in response.additional if rrset.rdtype not in ADDRESS_TYPES]
    return response.to_wire(max_size=65535)


def make_reply(query: dns.message.Message, rcode: int) -> bytes:
    """Build an answerless reply (NXDOMAIN, SERVFAIL, REFUSED) to query."""
    reply = dns.message.make_response(query, recursion_available=True)
    reply.set_rcode(rcode)
    return reply.to_wire()


def make_reply_from_wire(wire: bytes, rcode: int) -> bytes | None:
    """Build a reply from raw query bytes; None when they are not a parsable query."""
    try:
        query = dns.message.from_wire(wire)
    except Exception:  # dnspython raises many parse error types; all mean "not a query"
        return None
    if query.flags & dns.flags.QR:
        return None
    return make_reply(query, rcode)
