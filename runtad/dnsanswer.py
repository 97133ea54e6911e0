"""DNS reply rewriting with dnspython, for the rare replies the proxy must change."""

from __future__ import annotations

import dns.name
import dns.rdatatype

ADDRESS_TYPES = (dns.rdatatype.A, dns.rdatatype.AAAA)


def strip_foreign_addresses(
    wire: bytes, chain_names: frozenset[str], denied: frozenset[str] = frozenset()
) -> bytes:
    """Re-render a reply without the A/AAAA records for names outside the CNAME chain,
    and without the addresses in denied.

    The sandbox then never receives an address that was not put in its sets. This path
    is rare (an upstream adding unrelated or rebinding addresses), so it may afford dnspython.
    """
    import ipaddress

    import dns.message  # costly to import and rarely needed, so only here
    import dns.rrset

    response = dns.message.from_wire(wire)
    keep = {dns.name.from_text(name) for name in chain_names}
    denied_parsed = {ipaddress.ip_address(address) for address in denied}
    answer = []
    for rrset in response.answer:
        if rrset.rdtype not in ADDRESS_TYPES:
            answer.append(rrset)
            continue
        if rrset.name not in keep:
            continue
        kept = [rdata for rdata in rrset if ipaddress.ip_address(rdata.address) not in denied_parsed]
        if kept:
            answer.append(dns.rrset.from_rdata_list(rrset.name, rrset.ttl, kept))
    response.answer = answer
    response.additional = [rrset for rrset in response.additional if rrset.rdtype not in ADDRESS_TYPES]
    return response.to_wire(max_size=65535)
