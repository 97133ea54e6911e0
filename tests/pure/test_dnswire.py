"""The proxy's DNS wire reader against messages built by dnspython."""

from __future__ import annotations

import dns.message
import dns.rcode
import dns.rrset
import pytest

from runtad.dnswire import (
    TYPE_A,
    WireError,
    build_formerr,
    build_reply,
    follow_chain,
    read_question,
    read_reply,
)


def reply_with(qname: str, *rrsets: dns.rrset.RRset, additional: tuple[dns.rrset.RRset, ...] = ()) -> bytes:
    query = dns.message.make_query(qname, "A")
    response = dns.message.make_response(query)
    response.answer.extend(rrsets)
    response.additional.extend(additional)
    return response.to_wire()


def test_question_lowercased_without_dot() -> None:
    question = read_question(dns.message.make_query("PyPI.Org.", "AAAA").to_wire())
    assert question.qname == "pypi.org"
    assert question.qtype == 28


def test_question_rejects_two_questions() -> None:
    wire = bytearray(dns.message.make_query("pypi.org", "A").to_wire())
    wire[5] = 2
    with pytest.raises(WireError):
        read_question(bytes(wire))


@pytest.mark.parametrize("length", [0, 5, 11, 13, 20])
def test_question_truncated(length: int) -> None:
    wire = dns.message.make_query("pypi.org", "A").to_wire()[:length]
    with pytest.raises(WireError):
        read_question(wire)


def test_compression_pointer_loop_rejected() -> None:
    header = bytes.fromhex("1234 0100 0001 0000 0000 0000")
    with pytest.raises(WireError):
        read_question(header + b"\xc0\x0c\x00\x01\x00\x01")


def test_cname_chain_mixed_case_followed() -> None:
    wire = reply_with(
        "pypi.org",
        dns.rrset.from_text("pypi.org.", 300, "IN", "CNAME", "edge.cdn.test."),
        dns.rrset.from_text("edge.cdn.test.", 120, "IN", "CNAME", "E1.CDN.test."),
        dns.rrset.from_text("E1.CDN.test.", 600, "IN", "A", "192.0.2.20"),
    )
    chain = follow_chain(read_reply(wire))
    assert chain.addresses == (("192.0.2.20", 120),)
    assert chain.names == frozenset({"pypi.org", "edge.cdn.test", "e1.cdn.test"})
    assert chain.has_foreign is False


def test_foreign_answer_address_flagged() -> None:
    wire = reply_with(
        "pypi.org",
        dns.rrset.from_text("pypi.org.", 300, "IN", "A", "192.0.2.10"),
        dns.rrset.from_text("other.test.", 300, "IN", "A", "198.51.100.1"),
    )
    chain = follow_chain(read_reply(wire))
    assert chain.addresses == (("192.0.2.10", 300),)
    assert chain.has_foreign is True


def test_additional_address_flagged() -> None:
    wire = reply_with(
        "pypi.org",
        dns.rrset.from_text("pypi.org.", 300, "IN", "A", "192.0.2.10"),
        additional=(dns.rrset.from_text("ns.other.test.", 300, "IN", "A", "198.51.100.1"),),
    )
    assert follow_chain(read_reply(wire)).has_foreign is True


def test_ipv6_address_read() -> None:
    wire = reply_with("pypi.org", dns.rrset.from_text("pypi.org.", 60, "IN", "AAAA", "2001:db8::10"))
    assert follow_chain(read_reply(wire)).addresses == (("2001:db8::10", 60),)


def test_ttl_with_top_bit_is_zero() -> None:
    wire = bytearray(reply_with("pypi.org", dns.rrset.from_text("pypi.org.", 300, "IN", "A", "192.0.2.10")))
    ttl_offset = len(wire) - 4 - 2 - 4
    wire[ttl_offset : ttl_offset + 4] = (0x80000000).to_bytes(4, "big")
    record = read_reply(bytes(wire)).answers[0]
    assert record.rtype == TYPE_A
    assert record.ttl == 0


def test_nxdomain_reply_echoes_question() -> None:
    query = dns.message.make_query("example.com", "A")
    wire = query.to_wire()
    reply = dns.message.from_wire(build_reply(wire, read_question(wire), 3))
    assert reply.id == query.id
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert reply.question == query.question


def test_formerr_for_garbage_with_header() -> None:
    reply = build_formerr(bytes.fromhex("abcd 0100 0005 0000 0000 0000 ff"))
    assert reply is not None
    assert reply[:2] == bytes.fromhex("abcd")
    assert reply[3] & 0x0F == 1


def test_formerr_none_for_short_input() -> None:
    assert build_formerr(b"\x00\x01") is None
