"""A minimal reader of DNS messages (RFC 1035 section 4): what the proxy's decision needs.

The DNS proxy reads the question of every query and the answer records of every
allowed reply. A full dnspython parse costs several times more than this walk, and it
merges records of one RRset into one TTL, while each address here keeps its own TTL.
The parsed parts are named tuples because the proxy builds several per query, and a
frozen dataclass takes several times longer to construct.
"""

from __future__ import annotations

import socket
import struct
from typing import NamedTuple

TYPE_A = 1
TYPE_CNAME = 5
TYPE_AAAA = 28
TYPE_OPT = 41
CLASS_IN = 1
FLAG_QR = 0x8000
FLAG_TC = 0x0200
MAX_POINTER_HOPS = 64


class WireError(ValueError):
    """The bytes are not a well-formed DNS message."""


class Question(NamedTuple):
    id: int
    flags: int
    qname: str  # lower case, no trailing dot, labels as on the wire ("" for the root)
    qtype: int
    qclass: int
    end: int  # offset just past the question


class Record(NamedTuple):
    owner: str  # lower case, no trailing dot
    rtype: int
    ttl: int
    value: str | None  # address text for A/AAAA, target name for CNAME, else None


class Reply(NamedTuple):
    question: Question
    rcode: int
    answers: tuple[Record, ...]
    additional_addresses: int  # A/AAAA records outside the answer section


def read_name(wire: bytes, offset: int) -> tuple[str, int]:
    """Read a possibly compressed name at offset; return it and the offset after it."""
    labels: list[str] = []
    end = -1
    hops = 0
    length_total = 0
    while True:
        if offset >= len(wire):
            raise WireError("name runs past the end of the message")
        length = wire[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(wire):
                raise WireError("truncated compression pointer")
            if end < 0:
                end = offset + 2
            hops += 1
            if hops > MAX_POINTER_HOPS:
                raise WireError("compression pointer loop")
            offset = ((length & 0x3F) << 8) | wire[offset + 1]
            continue
        if length & 0xC0:
            raise WireError("unsupported label type")
        offset += 1
        if length == 0:
            break
        label = wire[offset : offset + length]
        if len(label) != length:
            raise WireError("label runs past the end of the message")
        length_total += length + 1
        if length_total > 255:
            raise WireError("name longer than 255 octets")
        labels.append(label.decode("latin-1").lower())
        offset += length
    return ".".join(labels), (end if end >= 0 else offset)


def read_question(wire: bytes) -> Question:
    """Read the header and the single question of a query."""
    if len(wire) < 12:
        raise WireError("message shorter than a DNS header")
    message_id, flags, qdcount = struct.unpack_from("!HHH", wire, 0)
    if qdcount != 1:
        raise WireError(f"expected one question, found {qdcount}")
    qname, offset = read_name(wire, 12)
    if offset + 4 > len(wire):
        raise WireError("truncated question")
    qtype, qclass = struct.unpack_from("!HH", wire, offset)
    return Question(message_id, flags, qname, qtype, qclass, offset + 4)


def read_reply(wire: bytes) -> Reply:
    """Read a reply's question, rcode and answer records, and count other addresses."""
    question = read_question(wire)
    ancount, nscount, arcount = struct.unpack_from("!HHH", wire, 6)
    offset = question.end
    answers: list[Record] = []
    additional_addresses = 0
    for index in range(ancount + nscount + arcount):
        owner, offset = read_name(wire, offset)
        if offset + 10 > len(wire):
            raise WireError("truncated resource record")
        rtype, rclass, ttl, rdlength = struct.unpack_from("!HHIH", wire, offset)
        offset += 10
        rdata_end = offset + rdlength
        if rdata_end > len(wire):
            raise WireError("record data runs past the end of the message")
        if ttl > 0x7FFFFFFF:
            ttl = 0  # RFC 2181 section 8: a TTL with the top bit set means zero
        value: str | None = None
        is_address = rclass == CLASS_IN and rtype in (TYPE_A, TYPE_AAAA)
        if index < ancount:
            if is_address:
                value = _address_text(rtype, wire[offset:rdata_end])
            elif rtype == TYPE_CNAME and rclass == CLASS_IN:
                value, _ = read_name(wire, offset)
            answers.append(Record(owner, rtype, ttl, value))
        elif is_address:
            additional_addresses += 1
        offset = rdata_end
    flags = question.flags
    return Reply(question, flags & 0x000F, tuple(answers), additional_addresses)


def _address_text(rtype: int, rdata: bytes) -> str:
    if rtype == TYPE_A:
        if len(rdata) != 4:
            raise WireError("A record data is not 4 octets")
        return socket.inet_ntop(socket.AF_INET, rdata)
    if len(rdata) != 16:
        raise WireError("AAAA record data is not 16 octets")
    return socket.inet_ntop(socket.AF_INET6, rdata)


def build_reply(query: bytes, question: Question, rcode: int) -> bytes:
    """Build an answerless reply (NXDOMAIN, SERVFAIL, ...) to a query, echoing its question."""
    opcode_and_rd = question.flags & 0x7900  # opcode bits and RD
    flags = FLAG_QR | opcode_and_rd | 0x0080 | (rcode & 0x000F)  # 0x0080: RA
    header = struct.pack("!HHHHHH", question.id, flags, 1, 0, 0, 0)
    return header + query[12 : question.end]


def build_formerr(query: bytes) -> bytes | None:
    """Build a FORMERR reply with no question; None when there is not even a header."""
    if len(query) < 12:
        return None
    message_id, flags = struct.unpack_from("!HH", query, 0)
    if flags & FLAG_QR:
        return None
    return struct.pack("!HHHHHH", message_id, FLAG_QR | (flags & 0x7900) | 1, 0, 0, 0, 0)


class Chain(NamedTuple):
    """The names reached from a query name through CNAMEs, and the addresses they have."""

    names: frozenset[str]
    addresses: tuple[tuple[str, int], ...]  # (address, TTL bounded by the chain's links)
    has_foreign: bool  # addresses for names the chain does not reach, in any section


def follow_chain(reply: Reply) -> Chain:
    """Follow CNAMEs from the query name inside the answer section, case-insensitively.

    An address's TTL is the smallest TTL on the path from the query name to it, so no
    set element outlives a link of the chain that named it.
    """
    ttl_to = {reply.question.qname: 0x7FFFFFFF}
    changed = True
    while changed:
        changed = False
        for record in reply.answers:
            if record.rtype != TYPE_CNAME or record.owner not in ttl_to or record.value is None:
                continue
            ttl = min(ttl_to[record.owner], record.ttl)
            if ttl_to.get(record.value, -1) < ttl:
                ttl_to[record.value] = ttl
                changed = True
    addresses = []
    has_foreign = reply.additional_addresses > 0
    for record in reply.answers:
        if record.rtype not in (TYPE_A, TYPE_AAAA) or record.value is None:
            continue
        if record.owner in ttl_to:
            addresses.append((record.value, min(ttl_to[record.owner], record.ttl)))
        else:
            has_foreign = True
    return Chain(frozenset(ttl_to), tuple(addresses), has_foreign)
