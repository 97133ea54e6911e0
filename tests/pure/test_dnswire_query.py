"""The resolver's wire-level query builder and reply reader, checked against dnspython."""

from __future__ import annotations

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtad.dnswire import (
    TYPE_A,
    TYPE_AAAA,
    build_query,
    encode_name,
    follow_chain,
    read_reply,
)

# Replies of dnsmasq 2.90 answering from a hosts file, captured on loopback (ID 0x1234):
# an AAAA answer for h5.apply.bench.test, the empty NOERROR answer to its A query, and
# NXDOMAIN for a name missing from the file.
DNSMASQ_AAAA = bytes.fromhex(
    "123485800001000100000000026835056170706c790562656e6368047465737400001c0001"
    "c00c001c00010000012c001020010db8000a00000000000000000006"
)
DNSMASQ_A_EMPTY = bytes.fromhex("123481800001000000000000026835056170706c790562656e636804746573740000010001")
DNSMASQ_NXDOMAIN = bytes.fromhex("123481830001000000000000046e6f7065056170706c790562656e636804746573740000010001")

LABEL = st.text(alphabet="abcXYZ019-_", min_size=1, max_size=63)
NAME = st.lists(LABEL, min_size=1, max_size=6).map(".".join)
# Text that is not always a valid name: empty labels, escapes, "@", Unicode, long labels.
NAME_TEXT = st.text(alphabet="ab.-\\@ü9", max_size=80) | st.text(alphabet="a.", min_size=60, max_size=300)


def dnspython_wire(text: str) -> bytes | type[Exception]:
    try:
        return dns.name.from_text(text).to_wire()
    except (dns.exception.DNSException, UnicodeError, ValueError) as error:
        return type(error)


def encoded_or_error(text: str) -> bytes | type[Exception]:
    try:
        return encode_name(text)
    except (dns.exception.DNSException, UnicodeError, ValueError) as error:
        return type(error)


@pytest.mark.parametrize(
    "text", ["pypi.org", "PyPI.Org.", "", ".", "@", "a..b", "x" * 63 + ".test", "x" * 64 + ".test", "a\\.b.test", "bücher.de", "_https._tcp.example.com"]
)
def test_encode_name_matches_dnspython(text: str) -> None:
    assert encoded_or_error(text) == dnspython_wire(text)


@settings(max_examples=300)
@given(NAME_TEXT)
def test_encode_name_matches_dnspython_any_text(text: str) -> None:
    assert encoded_or_error(text) == dnspython_wire(text)


@pytest.mark.parametrize("rdtype", ["A", "AAAA", "TXT"])
def test_build_query_matches_make_query(rdtype: str) -> None:
    reference = dns.message.make_query("H1.Apply.bench.test", rdtype)
    wire = build_query(encode_name("H1.Apply.bench.test"), dns.rdatatype.from_text(rdtype), reference.id)
    assert wire == reference.to_wire()


@given(NAME, st.sampled_from([TYPE_A, TYPE_AAAA]), st.integers(0, 0xFFFF))
def test_build_query_parsed_by_dnspython(name: str, qtype: int, message_id: int) -> None:
    message = dns.message.from_wire(build_query(encode_name(name), qtype, message_id))
    assert message.id == message_id
    assert message.flags == dns.flags.RD
    assert message.edns == -1
    assert [(question.name, question.rdtype) for question in message.question] == [
        (dns.name.from_text(name), qtype)
    ]


def test_read_reply_dnsmasq_aaaa() -> None:
    reply = read_reply(DNSMASQ_AAAA)
    assert reply.rcode == 0
    assert follow_chain(reply).addresses == (("2001:db8:a::6", 300),)


def test_read_reply_dnsmasq_empty_answer() -> None:
    reply = read_reply(DNSMASQ_A_EMPTY)
    assert reply.rcode == 0
    assert reply.answers == ()


def test_read_reply_dnsmasq_nxdomain() -> None:
    reply = read_reply(DNSMASQ_NXDOMAIN)
    assert reply.rcode == 3
    assert reply.question.qname == "nope.apply.bench.test"


# One answer record: (index of its owner in the name list, type, TTL, value index).
RECORD = st.tuples(st.integers(0, 3), st.sampled_from(["A", "AAAA", "CNAME", "TXT"]), st.integers(0, 2**31 - 1), st.integers(0, 3))


def record_value(rtype: str, index: int, names: list[str]) -> str:
    if rtype == "A":
        return f"192.0.2.{index + 1}"
    if rtype == "AAAA":
        return f"2001:db8::{index + 1}"
    if rtype == "CNAME":
        return names[index] + "."
    return f'"text {index}"'


@settings(max_examples=200)
@given(st.lists(NAME, min_size=4, max_size=4, unique_by=str.lower), st.lists(RECORD, max_size=8))
def test_read_reply_matches_dnspython(names: list[str], records: list[tuple[int, str, int, int]]) -> None:
    """Each answer record is read with its own TTL, as dnspython reads the same wire."""
    query = dns.message.make_query(names[0], "A")
    response = dns.message.make_response(query)
    expected = []
    for owner_index, rtype, ttl, value_index in records:
        value = record_value(rtype, value_index, names)
        # One RRset per record keeps every TTL, because dnspython gives an RRset one TTL.
        response.answer.append(dns.rrset.from_text(names[owner_index] + ".", ttl, "IN", rtype, value))
        read_value = None if rtype == "TXT" else value.removesuffix(".").lower()
        expected.append((names[owner_index].lower(), dns.rdatatype.from_text(rtype), ttl, read_value))
    wire = response.to_wire()

    reply = read_reply(wire)
    assert [(record.owner, record.rtype, record.ttl, record.value) for record in reply.answers] == expected
    parsed = dns.message.from_wire(wire)
    assert {(rrset.name.to_text(omit_final_dot=True).lower(), rrset.rdtype) for rrset in parsed.answer} == {
        (owner, rtype) for owner, rtype, _, _ in expected
    }


@settings(max_examples=200)
@given(st.lists(NAME, min_size=4, max_size=4, unique_by=str.lower), st.lists(RECORD, max_size=8))
def test_follow_chain_matches_reference(names: list[str], records: list[tuple[int, str, int, int]]) -> None:
    """Addresses reached through CNAMEs get the smallest TTL on their path, as a plain walk finds."""
    query = dns.message.make_query(names[0], "A")
    response = dns.message.make_response(query)
    items = []
    for owner_index, rtype, ttl, value_index in records:
        value = record_value(rtype, value_index, names)
        response.answer.append(dns.rrset.from_text(names[owner_index] + ".", ttl, "IN", rtype, value))
        items.append((names[owner_index].lower(), rtype, ttl, value.removesuffix(".").lower()))
    chain = follow_chain(read_reply(response.to_wire()))
    assert chain.addresses == reference_chain(names[0].lower(), items)


def reference_chain(qname: str, items: list[tuple[str, str, int, str]]) -> tuple[tuple[str, int], ...]:
    """Walk CNAMEs from qname over the records until no path gets a larger TTL bound."""
    best = {qname: 2**31 - 1}
    for _ in range(len(items) + 1):
        for owner, rtype, ttl, value in items:
            if rtype == "CNAME" and owner in best:
                best[value] = max(best.get(value, -1), min(best[owner], ttl))
    return tuple(
        (value, min(best[owner], ttl)) for owner, rtype, ttl, value in items if rtype in ("A", "AAAA") and owner in best
    )
