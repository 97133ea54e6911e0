"""DNS reply rewriting with dnspython, for the rare replies the proxy must change."""

from __future__ import annotations

import dns.name
import dns.rdatatype

ADDRESS_TYPES = (dns.rdatatype.A, dns.rdatatype.AAAA)


def strip_foreign_addresses(wire: bytes, chain_names: frozenset[str]) -> bytes:
    """Re-render a reply without the A/AAAA records for names outside the CNAME chain.

    The sandbox then never receives an address that was not put in its sets. This path
    is rare (an upstream adding unrelated addresses), so it may afford dnspython.
    """
    import dns.message  # costly to import and rarely needed, so only here

    response = dns.message.from_wire(wire)
    keep = {dns.name.from_text(name) for name in chain_names}
    response.answer = [
        rrset for rrset in response.answer if rrset.rdtype not in ADDRESS_TYPES or rrset.name in keep
    ]
    response.additional = [rrset for rrset in response.additional if rrset.rdtype not in ADDRESS_TYPES]
    return response.to_wire(max_size=65535)
