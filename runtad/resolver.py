"""Upstream resolution of exact allowed hosts (A and AAAA), used to pre-fill the sets."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import dns.name
import dns.rcode
import dns.rdatatype

from .dnswire import FLAG_TC, WireError, follow_chain, read_reply
from .upstream import Upstream, UpstreamError


@dataclass(frozen=True)
class Resolution:
    host: str
    addresses: tuple[tuple[str, int], ...]  # (address, TTL seconds)
    error: str | None  # why the host has no addresses, or None

    @property
    def ok(self) -> bool:
        return self.error is None


async def resolve_host(upstream: Upstream, host: str) -> Resolution:
    """Resolve host's A and AAAA records upstream, following CNAME chains."""
    qname = dns.name.from_text(host)
    results = await asyncio.gather(
        _resolve_type(upstream, qname, dns.rdatatype.A),
        _resolve_type(upstream, qname, dns.rdatatype.AAAA),
    )
    addresses: list[tuple[str, int]] = []
    errors = []
    for found, error in results:
        addresses.extend(found)
        if error:
            errors.append(error)
    if addresses:
        return Resolution(host, tuple(addresses), None)
    return Resolution(host, (), "; ".join(errors) or "no A or AAAA records")


async def _resolve_type(
    upstream: Upstream, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType
) -> tuple[list[tuple[str, int]], str | None]:
    # dns.message costs about 80 ms to import; runtad needs it only once it resolves.
    import dns.message

    query = dns.message.make_query(qname, rdtype).to_wire()
    try:
        reply = read_reply(await upstream.exchange(query))
        if reply.question.flags & FLAG_TC:
            reply = read_reply(await upstream.exchange(query, tcp=True))
    except UpstreamError as error:
        return [], str(error)
    except WireError as error:
        return [], f"unparsable answer: {error}"
    if reply.rcode != dns.rcode.NOERROR:
        rcode_text = dns.rcode.to_text(dns.rcode.Rcode(reply.rcode))
        return [], f"{dns.rdatatype.to_text(rdtype)} lookup returned {rcode_text}"
    return list(follow_chain(reply).addresses), None
