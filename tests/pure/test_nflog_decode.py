"""NFLOG fast decoder: the same records as pyroute2's, on captured and generated datagrams."""

from __future__ import annotations

import ipaddress
import socket
import struct
import threading

from hypothesis import given, settings
from hypothesis import strategies as st
from pyroute2.netlink import NLA_F_NET_BYTEORDER

from runtad.nflog import (
    RECV_BUFSIZE,
    LogRecord,
    _receive_buffer,
    decode_datagram,
    decode_datagram_pyroute2,
    format_ipv6,
)
from tests.pure.test_nflog_wire import IPV4_TCP_SYN, IPV6_UDP, build_done, build_packet, unhex

# The attribute order of the datagrams captured in test_nflog_wire, plus NFULA_MARK.
KERNEL_ORDER = ("NFULA_PACKET_HDR", "NFULA_PREFIX", "NFULA_MARK", "NFULA_IFINDEX_OUTDEV",
                "NFULA_UID", "NFULA_GID", "NFULA_SEQ", "NFULA_PAYLOAD")

uint32 = st.integers(min_value=0, max_value=0xFFFFFFFF)
ipv4_address = st.binary(min_size=4, max_size=4)
ipv6_address = st.binary(min_size=16, max_size=16)


@st.composite
def ipv4_packets(draw: st.DrawFn) -> bytes:
    protocol = draw(st.sampled_from([1, 6, 17, 132, draw(st.integers(0, 255))]))
    options = draw(st.integers(0, 10)) * 4
    flags_fragment = draw(st.sampled_from([0x4000, 0x2000, 0x0010, draw(st.integers(0, 0xFFFF))]))
    header = (
        bytes([0x45 + options // 4, 0])
        + (20 + options + 8).to_bytes(2, "big")
        + bytes(2)
        + flags_fragment.to_bytes(2, "big")
        + bytes([64, protocol])
        + bytes(2)
        + draw(ipv4_address)
        + draw(ipv4_address)
        + bytes(options)
    )
    transport = draw(st.binary(max_size=12))
    return header + transport


@st.composite
def ipv6_packets(draw: st.DrawFn) -> bytes:
    extensions = draw(st.lists(st.sampled_from([0, 43, 44, 51, 60]), max_size=3))
    protocol = draw(st.sampled_from([6, 17, 58, draw(st.integers(0, 255))]))
    numbers = [*extensions, protocol]
    body = b""
    for kind, following in zip(extensions, numbers[1:]):
        if kind == 44:
            offset_flags = draw(st.sampled_from([0x0001, 0x0010, 0]))
            body += bytes([following, 0]) + offset_flags.to_bytes(2, "big") + bytes(4)
        elif kind == 51:
            body += bytes([following, 1]) + bytes(10)  # (1 + 2) * 4 bytes
        else:
            body += bytes([following, 0]) + bytes(6)  # (0 + 1) * 8 bytes
    body += draw(st.binary(max_size=12))
    header = (
        bytes.fromhex("60000000")
        + len(body).to_bytes(2, "big")
        + bytes([numbers[0], 64])
        + draw(ipv6_address)
        + draw(ipv6_address)
    )
    cut = draw(st.integers(min_value=0, max_value=len(header) + len(body)))
    return (header + body)[: max(cut, draw(st.sampled_from([0, 40])))]


payloads = st.one_of(ipv4_packets(), ipv6_packets(), st.binary(max_size=60))


@st.composite
def packet_messages(draw: st.DrawFn) -> bytes:
    values: dict[str, object] = {
        "NFULA_PACKET_HDR": {"hw_protocol": draw(st.sampled_from([0x0800, 0x86DD])), "hook": 3},
        "NFULA_PREFIX": draw(st.text(max_size=20)),
        "NFULA_MARK": draw(uint32),
        "NFULA_IFINDEX_OUTDEV": draw(uint32),
        "NFULA_UID": draw(uint32),
        "NFULA_GID": draw(uint32),
        "NFULA_SEQ": draw(uint32),
        "NFULA_PAYLOAD": draw(payloads),
        "NFULA_TIMESTAMP": {
            "sec": draw(st.integers(0, 2**40)), "usec": draw(st.integers(0, 999_999)),
        },
    }
    names = draw(st.lists(st.sampled_from(sorted(values)), unique=True))
    if draw(st.booleans()):
        names = [name for name in KERNEL_ORDER if name in names or draw(st.booleans())]
    family = draw(st.sampled_from([socket.AF_INET, socket.AF_INET6]))
    return build_packet([[name, values[name]] for name in names], family=family)


@st.composite
def datagrams(draw: st.DrawFn) -> bytes:
    messages = draw(st.lists(packet_messages(), min_size=1, max_size=4))
    done = build_done() if draw(st.booleans()) else b""
    return b"".join(messages) + done


def test_captured_ipv4_same_as_pyroute2() -> None:
    assert decode_datagram(IPV4_TCP_SYN) == decode_datagram_pyroute2(IPV4_TCP_SYN)


def test_captured_ipv6_same_as_pyroute2() -> None:
    assert decode_datagram(IPV6_UDP) == decode_datagram_pyroute2(IPV6_UDP)


def test_captured_batch_same_as_pyroute2() -> None:
    batch = IPV4_TCP_SYN + IPV6_UDP + build_done()
    records, malformed = decode_datagram(batch)
    assert (records, malformed) == decode_datagram_pyroute2(batch)
    assert len(records) == 2
    assert malformed == 0


@settings(max_examples=400, deadline=None)
@given(datagrams())
def test_generated_datagram_same_as_pyroute2(data: bytes) -> None:
    assert decode_datagram(data) == decode_datagram_pyroute2(data)


@given(packet_messages())
def test_memoryview_input_same_as_bytes(data: bytes) -> None:
    assert decode_datagram(memoryview(bytearray(data))) == decode_datagram(data)


def test_duplicate_attr_first_wins() -> None:
    payload = IPV4_TCP_SYN[80:140]
    data = build_packet([["NFULA_SEQ", 5], ["NFULA_SEQ", 9], ["NFULA_PAYLOAD", payload]])
    (record,), malformed = decode_datagram(data)
    assert malformed == 0
    assert record.seq == 5
    assert decode_datagram_pyroute2(data) == ([record], 0)


def test_byteorder_flag_is_masked() -> None:
    data = bytearray(IPV4_TCP_SYN)
    seq_type = 12 | NLA_F_NET_BYTEORDER
    data[70:72] = seq_type.to_bytes(2, "little")  # the NFULA_SEQ attribute header
    data[72:76] = (77).to_bytes(4, "big")
    (record,), _ = decode_datagram(bytes(data))
    assert record.seq == 77
    assert decode_datagram_pyroute2(bytes(data)) == ([record], 0)


def test_mark_is_decoded() -> None:
    data = build_packet([["NFULA_MARK", 0x52544E], ["NFULA_PAYLOAD", IPV4_TCP_SYN[80:140]]])
    (record,), _ = decode_datagram(data)
    assert record.mark == 0x52544E


def test_timestamp_is_decoded() -> None:
    stamp = {"sec": 1_700_000_000, "usec": 500_000}
    data = build_packet([["NFULA_TIMESTAMP", stamp], ["NFULA_PAYLOAD", IPV4_TCP_SYN[80:140]]])
    (record,), _ = decode_datagram(data)
    assert record.timestamp == 1_700_000_000.5


def test_short_uid_attr_is_malformed() -> None:
    data = unhex("""
        24000000 0004 0000 00000000 00000000  # nlmsghdr: len 36, ULOG<<8|PACKET
        02 00 0007                            # nfgenmsg: AF_INET, group 7
        0600 0b00 0001 0000                   # NFULA_UID with 2 bytes instead of 4
        0800 0900 45000014                    # NFULA_PAYLOAD: 4 bytes, cut short
    """)
    assert decode_datagram(data) == ([], 1)


def test_attr_past_message_end_is_malformed() -> None:
    data = bytearray(IPV6_UDP)
    data[76:78] = (0x0100).to_bytes(2, "little")  # NFULA_PAYLOAD claims 256 bytes
    assert decode_datagram(bytes(data)) == ([], 1)


def test_message_past_datagram_end_is_malformed() -> None:
    data = bytearray(IPV4_TCP_SYN + IPV6_UDP)
    data[140:144] = (400).to_bytes(4, "little")  # the second message claims 400 bytes
    records, malformed = decode_datagram(bytes(data))
    assert [record.seq for record in records] == [0]
    assert malformed == 1


def test_records_survive_buffer_reuse() -> None:
    buffer = bytearray(IPV6_UDP)
    records, _ = decode_datagram(memoryview(buffer))
    buffer[:] = bytes(len(buffer))
    assert records[0].dst == "2001:db8::99"
    assert records[0].prefix == "runta deny "


def test_invalid_utf8_prefix_is_replaced() -> None:
    data = build_packet([["NFULA_PREFIX", "runta"], ["NFULA_PAYLOAD", IPV4_TCP_SYN[80:140]]])
    corrupted = data.replace(b"runta", b"run\xfft")
    (record,), _ = decode_datagram(corrupted)
    assert record.prefix == "run\ufffdt"


@given(st.binary(max_size=400))
def test_random_bytes_decode_without_error(data: bytes) -> None:
    records, malformed = decode_datagram(data)
    assert malformed >= 0
    assert all(isinstance(record, LogRecord) for record in records)


@given(st.integers(min_value=0, max_value=len(IPV4_TCP_SYN) - 1), st.integers(0, 255))
def test_corrupted_capture_counts_something(index: int, value: int) -> None:
    data = bytearray(IPV4_TCP_SYN)
    data[index] = value
    records, malformed = decode_datagram(bytes(data))
    assert len(records) + malformed >= 1


@given(ipv6_address)
def test_format_ipv6_matches_ipaddress(packed: bytes) -> None:
    assert format_ipv6(packed) == str(ipaddress.IPv6Address(packed))


def test_format_ipv6_mapped_and_compatible() -> None:
    for text in ("::ffff:192.0.2.1", "::192.0.2.1", "64:ff9b::192.0.2.1", "::1", "::"):
        packed = ipaddress.IPv6Address(text).packed
        assert format_ipv6(packed) == str(ipaddress.IPv6Address(text))


def test_receive_buffer_once_per_thread() -> None:
    first = _receive_buffer()
    assert _receive_buffer() is first
    assert len(first) == RECV_BUFSIZE
    others: list[memoryview] = []
    thread = threading.Thread(target=lambda: others.append(_receive_buffer()))
    thread.start()
    thread.join(5)
    assert len(others) == 1
    assert others[0] is not first


def test_struct_layout_of_nlmsghdr() -> None:
    # The fast decoder reads nlmsg_len and nlmsg_type in host order, as the kernel writes them.
    length, kind = struct.unpack_from("=IH", IPV4_TCP_SYN)
    assert length == len(IPV4_TCP_SYN)
    assert kind == 0x0400
