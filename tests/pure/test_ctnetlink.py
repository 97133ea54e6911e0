"""Builders and the partial decoder of ctnetlink messages."""

from __future__ import annotations

import socket
import struct

from runtad import ctnetlink
from runtad.ctnetlink import FlowTuple

FLOW4 = FlowTuple("10.213.0.2", "198.51.100.7", socket.IPPROTO_TCP, 40000, 443)
FLOW6 = FlowTuple("fd72:756e:7461::2", "2001:db8::7", socket.IPPROTO_UDP, 5353, 53)


def dump_message(flow: FlowTuple, *extra: bytes) -> bytes:
    """Build a message as a dump returns it: nlmsghdr, nfgenmsg, both tuples, then extra attributes."""
    family = socket.AF_INET6 if ":" in flow.source else socket.AF_INET
    attributes = (
        ctnetlink.encode_tuple(ctnetlink.CTA_TUPLE_ORIG, flow)
        + ctnetlink.encode_tuple(ctnetlink.CTA_TUPLE_REPLY, flow.reverse())
        + b"".join(extra)
    )
    return ctnetlink.build_request(ctnetlink.IPCTNL_MSG_CT_NEW, 0x2, 9, family, attributes)


def parse(message: bytes) -> ctnetlink.ConntrackEntry:
    (_kind, _sequence, start, end), = ctnetlink.iter_messages(message)
    return ctnetlink.parse_entry(message, start, end)


def test_encode_attribute_pads():
    encoded = ctnetlink.encode_attribute(ctnetlink.CTA_PROTO_NUM, b"\x06")
    assert encoded == struct.pack("=HH", 5, ctnetlink.CTA_PROTO_NUM) + b"\x06\x00\x00\x00"


def test_encode_attribute_nested_flag():
    encoded = ctnetlink.encode_attribute(ctnetlink.CTA_TUPLE_IP, b"", nested=True)
    assert struct.unpack("=HH", encoded) == (4, ctnetlink.CTA_TUPLE_IP | ctnetlink.NLA_F_NESTED)


def test_build_request_header():
    message = ctnetlink.build_request(ctnetlink.IPCTNL_MSG_CT_DELETE, 0x5, 77, socket.AF_INET6, b"\x00" * 8)
    length, kind, flags, sequence, pid = struct.unpack_from("=IHHII", message)
    assert length == len(message) == 16 + 4 + 8
    assert kind == (1 << 8) | 2
    assert flags == 0x5
    assert sequence == 77
    assert pid == 0
    assert message[16:20] == bytes([socket.AF_INET6, 0, 0, 0])


def test_dump_request_all_families():
    message = ctnetlink.build_dump_request(3)
    assert struct.unpack_from("=HH", message, 4) == ((1 << 8) | 1, 0x301)
    assert message[16] == socket.AF_UNSPEC


def test_parse_entry_ipv4_addresses():
    entry = parse(dump_message(FLOW4))
    assert entry.family == socket.AF_INET
    assert entry.original_destination == socket.inet_pton(socket.AF_INET, "198.51.100.7")
    assert entry.reply_source == socket.inet_pton(socket.AF_INET, "198.51.100.7")


def test_parse_entry_ipv6_addresses():
    entry = parse(dump_message(FLOW6))
    assert entry.family == socket.AF_INET6
    assert entry.original_destination == socket.inet_pton(socket.AF_INET6, "2001:db8::7")


def test_parse_entry_redirected_reply_source():
    redirected = FlowTuple("127.0.0.1", "10.213.0.2", socket.IPPROTO_UDP, 1053, 5353)
    attributes = (
        ctnetlink.encode_tuple(ctnetlink.CTA_TUPLE_ORIG, FLOW6)
        + ctnetlink.encode_tuple(ctnetlink.CTA_TUPLE_REPLY, redirected)
    )
    message = ctnetlink.build_request(ctnetlink.IPCTNL_MSG_CT_NEW, 0, 1, socket.AF_INET, attributes)
    assert parse(message).reply_source == socket.inet_pton(socket.AF_INET, "127.0.0.1")


def test_parse_entry_delete_key_attributes():
    entry_id = ctnetlink.encode_attribute(ctnetlink.CTA_ID, struct.pack("!I", 1234))
    zone = ctnetlink.encode_attribute(ctnetlink.CTA_ZONE, struct.pack("!H", 5))
    timeout = ctnetlink.encode_attribute(ctnetlink.CTA_TIMEOUT, struct.pack("!I", 30))
    entry = parse(dump_message(FLOW4, timeout, entry_id, zone))
    expected = ctnetlink.encode_tuple(ctnetlink.CTA_TUPLE_ORIG, FLOW4) + entry_id + zone
    assert entry.delete_key == expected


def test_parse_entry_without_tuples():
    message = ctnetlink.build_request(ctnetlink.IPCTNL_MSG_CT_NEW, 0, 1, socket.AF_INET)
    entry = parse(message)
    assert entry.original_destination is None
    assert entry.reply_source is None
    assert entry.delete_key == b""


def test_iter_attributes_stops_at_bad_length():
    data = struct.pack("=HH", 8, 1) + b"abcd" + struct.pack("=HH", 64, 2) + b"xx"
    assert list(ctnetlink.iter_attributes(data, 0, len(data))) == [(1, 4, 8)]


def test_iter_messages_two():
    first = ctnetlink.build_dump_request(1)
    second = ctnetlink.build_dump_request(2)
    found = list(ctnetlink.iter_messages(first + second))
    assert [sequence for _, sequence, _, _ in found] == [1, 2]
    assert found[1][3] == len(first) + len(second)


def test_delete_request_carries_key():
    entry = parse(dump_message(FLOW6))
    message = ctnetlink.build_delete_request(entry, 4)
    assert struct.unpack_from("=HH", message, 4) == ((1 << 8) | 2, 0x5)
    assert message[16] == socket.AF_INET6
    assert message[20:] == entry.delete_key


def test_new_request_timeout_and_flags():
    message = ctnetlink.build_new_request(FLOW4, 600, 8)
    flags = struct.unpack_from("=H", message, 6)[0]
    assert flags == 0x1 | 0x4 | 0x400 | 0x200
    assert message.endswith(ctnetlink.encode_attribute(ctnetlink.CTA_TIMEOUT, struct.pack("!I", 600)))
