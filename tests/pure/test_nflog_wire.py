"""NFLOG wire layer: config messages, packet messages and payload headers against golden bytes."""

from __future__ import annotations

import errno
import ipaddress
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyroute2.netlink import NLM_F_ACK, NLM_F_REQUEST, NLMSG_DONE, nlmsg

from runtad.nflog import (
    NFULNL_CONFIG_TYPE,
    NFULNL_PACKET_TYPE,
    LogRecord,
    NetnsSwitchError,
    NflogBindError,
    NflogMarshal,
    SequenceTracker,
    build_bind_msg,
    decode_datagram,
    nfulnl_packet_msg,
    parse_ip_packet,
)


def unhex(annotated: str) -> bytes:
    """Join the hex digits of an annotated dump; text after '#' is a comment."""
    digits = "".join(line.split("#", 1)[0] for line in annotated.splitlines())
    return bytes.fromhex("".join(digits.split()))


# Captured on Linux 6.18 with the netns and ruleset of the root NFLOG tests: `connect()` from
# 192.0.2.1 to 192.0.2.99:443 in a netns whose output chain has
# `ct state new log prefix "runta deny " group 7`.
IPV4_TCP_SYN = unhex("""
    8c000000 0004 0000 00000000 00000000  # nlmsghdr: len 140, type ULOG<<8|PACKET, seq 0, pid 0
    02 00 0007                            # nfgenmsg: AF_INET, version 0, res_id (group) 7
    0800 0100 0800 03 00                  # NFULA_PACKET_HDR: hw_protocol 0x0800, hook 3 (output)
    1000 0a00 72756e74612064656e792000    # NFULA_PREFIX: "runta deny " NUL
    0800 0500 00000003                    # NFULA_IFINDEX_OUTDEV: 3
    0800 0b00 00000000                    # NFULA_UID: 0
    0800 0e00 00000000                    # NFULA_GID: 0
    0800 0c00 00000000                    # NFULA_SEQ: 0
    4000 0900                             # NFULA_PAYLOAD: 60 bytes
    4500003c 7ef74000 40063760            #   IPv4: IHL 5, length 60, DF, TTL 64, protocol 6
    c0000201 c0000263                     #   192.0.2.1 -> 192.0.2.99
    8a58 01bb 2b83ff21 00000000           #   TCP: sport 35416, dport 443, seq, ack
    a002 faf0 8493 0000                   #   data offset 10, SYN, window, checksum, urgent
    020405b4 0402080a 54514908 00000000   #   options: MSS, SACK permitted, timestamps
    0103030a                              #   NOP, window scale
""")

# Captured the same way: `sendto(b"runta")` from 2001:db8::1 to [2001:db8::99]:53.
IPV6_UDP = unhex("""
    88000000 0004 0000 00000000 00000000  # nlmsghdr: len 136, type ULOG<<8|PACKET
    0a 00 0007                            # nfgenmsg: AF_INET6, version 0, res_id 7
    0800 0100 86dd 03 00                  # NFULA_PACKET_HDR: hw_protocol 0x86dd, hook 3
    1000 0a00 72756e74612064656e792000    # NFULA_PREFIX: "runta deny " NUL
    0800 0500 00000003                    # NFULA_IFINDEX_OUTDEV: 3
    0800 0b00 00000000                    # NFULA_UID: 0
    0800 0e00 00000000                    # NFULA_GID: 0
    0800 0c00 00000001                    # NFULA_SEQ: 1
    3900 0900                             # NFULA_PAYLOAD: 53 bytes, then 3 bytes padding
    60021d06 000d 11 40                   #   IPv6: payload length 13, next header 17, hop limit 64
    20010db8000000000000000000000001      #   2001:db8::1
    20010db8000000000000000000000099      #   2001:db8::99
    8016 0035 000d 5c2a                   #   UDP: sport 32790, dport 53, length 13, checksum
    72756e7461 000000                     #   "runta", padding
""")

# NFULNL_MSG_CONFIG as bind_group() sends it for group 7, copy range 128.
BIND_GROUP_7 = unhex("""
    48000000 0104 0500 01000000 00000000  # nlmsghdr: len 72, ULOG<<8|CONFIG, REQUEST|ACK, seq 1
    00 00 0007                            # nfgenmsg: AF_UNSPEC, version 0, res_id 7
    0500 0100 01 000000                   # NFULA_CFG_CMD: NFULNL_CFG_CMD_BIND
    0a00 0200 00000080 02 00 0000         # NFULA_CFG_MODE: copy_range 128, NFULNL_COPY_PACKET
    0800 0300 00004000                    # NFULA_CFG_NLBUFSIZ: 16384
    0800 0400 0000000a                    # NFULA_CFG_TIMEOUT: 10 (1/100 s)
    0800 0500 00000020                    # NFULA_CFG_QTHRESH: 32
    0600 0600 0001 0000                   # NFULA_CFG_FLAGS: NFULNL_CFG_F_SEQ
""")


def build_packet(attrs: list[list[object]], family: int = socket.AF_INET) -> bytes:
    msg = nfulnl_packet_msg()
    msg["header"]["type"] = NFULNL_PACKET_TYPE
    msg["nfgen_family"] = family
    msg["version"] = 0
    msg["res_id"] = 7
    msg["attrs"] = attrs
    msg.encode()
    return bytes(msg.data)


def build_done() -> bytes:
    msg = nlmsg()
    msg["header"]["type"] = NLMSG_DONE
    msg.encode()
    return bytes(msg.data)


def ipv4_udp(dport: int = 53) -> bytes:
    return (
        bytes.fromhex("45000020 00004000 40110000")
        + ipaddress.IPv4Address("192.0.2.1").packed
        + ipaddress.IPv4Address("192.0.2.99").packed
        + (40000).to_bytes(2, "big")
        + dport.to_bytes(2, "big")
        + bytes.fromhex("000c 0000")
    )


def ipv6_header(next_header: int, payload_length: int) -> bytes:
    return (
        bytes.fromhex("60000000")
        + payload_length.to_bytes(2, "big")
        + bytes([next_header, 64])
        + ipaddress.IPv6Address("2001:db8::1").packed
        + ipaddress.IPv6Address("2001:db8::99").packed
    )


def test_bind_msg_matches_golden() -> None:
    msg = build_bind_msg(7, 128)
    msg["header"]["type"] = NFULNL_CONFIG_TYPE
    msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK
    msg["header"]["sequence_number"] = 1
    msg["header"]["pid"] = 0
    msg.encode()
    assert bytes(msg.data) == BIND_GROUP_7


def test_bind_msg_decodes_attrs() -> None:
    (msg,) = NflogMarshal().parse(BIND_GROUP_7)
    assert msg["res_id"] == 7
    assert msg.get_attr("NFULA_CFG_CMD")["command"] == 1
    assert msg.get_attr("NFULA_CFG_MODE")["copy_range"] == 128
    assert msg.get_attr("NFULA_CFG_MODE")["copy_mode"] == 2
    assert msg.get_attr("NFULA_CFG_FLAGS") == 1


def test_captured_ipv4_kernel_attrs() -> None:
    (msg,) = NflogMarshal().parse(IPV4_TCP_SYN)
    assert msg["header"]["type"] == NFULNL_PACKET_TYPE
    assert msg["nfgen_family"] == socket.AF_INET
    assert msg["res_id"] == 7
    assert msg.get_attr("NFULA_PACKET_HDR")["hw_protocol"] == 0x0800
    assert msg.get_attr("NFULA_PACKET_HDR")["hook"] == 3
    assert msg.get_attr("NFULA_IFINDEX_OUTDEV") == 3
    assert len(msg.get_attr("NFULA_PAYLOAD")) == 60


def test_captured_ipv4_tcp_record() -> None:
    records, malformed = decode_datagram(IPV4_TCP_SYN)
    assert malformed == 0
    assert records == [
        LogRecord(
            prefix="runta deny ",
            family=4,
            protocol="tcp",
            src="192.0.2.1",
            dst="192.0.2.99",
            sport=35416,
            dport=443,
            uid=0,
            gid=0,
            seq=0,
            timestamp=None,
        )
    ]


def test_captured_ipv6_udp_record() -> None:
    records, malformed = decode_datagram(IPV6_UDP)
    assert malformed == 0
    assert records == [
        LogRecord(
            prefix="runta deny ",
            family=6,
            protocol="udp",
            src="2001:db8::1",
            dst="2001:db8::99",
            sport=32790,
            dport=53,
            uid=0,
            gid=0,
            seq=1,
            timestamp=None,
        )
    ]


def test_encoded_packet_roundtrip() -> None:
    data = build_packet(
        [
            ["NFULA_PACKET_HDR", {"hw_protocol": 0x0800, "hook": 1}],
            ["NFULA_PREFIX", "runta allow "],
            ["NFULA_TIMESTAMP", {"sec": 1_700_000_000, "usec": 250_000}],
            ["NFULA_UID", 1000],
            ["NFULA_GID", 100],
            ["NFULA_SEQ", 41],
            ["NFULA_PAYLOAD", ipv4_udp(dport=5353)],
        ]
    )
    records, malformed = decode_datagram(data)
    assert malformed == 0
    assert records == [
        LogRecord(
            prefix="runta allow ",
            family=4,
            protocol="udp",
            src="192.0.2.1",
            dst="192.0.2.99",
            sport=40000,
            dport=5353,
            uid=1000,
            gid=100,
            seq=41,
            timestamp=1_700_000_000.25,
        )
    ]


def test_batch_with_done_decodes_all() -> None:
    records, malformed = decode_datagram(IPV4_TCP_SYN + IPV6_UDP + build_done())
    assert malformed == 0
    assert [record.seq for record in records] == [0, 1]


def test_packet_without_uid_has_none() -> None:
    data = build_packet([["NFULA_PAYLOAD", ipv4_udp()]])
    (record,), _ = decode_datagram(data)
    assert record.uid is None
    assert record.gid is None
    assert record.seq is None
    assert record.prefix == ""


@pytest.mark.parametrize("cut", [1, 15, 16, 20, 40, 75, 100, 139])
def test_truncated_datagram_is_malformed(cut: int) -> None:
    records, malformed = decode_datagram(IPV4_TCP_SYN[:cut])
    assert records == []
    assert malformed == 1


def test_trailing_bytes_are_malformed() -> None:
    records, malformed = decode_datagram(IPV4_TCP_SYN + b"\x00" * 8)
    assert len(records) == 1
    assert malformed == 1


def test_empty_datagram_decodes_nothing() -> None:
    assert decode_datagram(b"") == ([], 0)


def test_packet_without_payload_is_malformed() -> None:
    data = build_packet([["NFULA_PREFIX", "runta deny "]])
    assert decode_datagram(data) == ([], 1)


def test_non_ip_payload_is_malformed() -> None:
    data = build_packet([["NFULA_PAYLOAD", bytes.fromhex("0001080006040001")]])
    assert decode_datagram(data) == ([], 1)


def test_unknown_message_type_is_malformed() -> None:
    data = bytearray(IPV4_TCP_SYN)
    data[4:6] = (0x0405).to_bytes(2, "little")
    assert decode_datagram(bytes(data)) == ([], 1)


def test_oversized_attr_length_is_malformed() -> None:
    data = bytearray(IPV4_TCP_SYN)
    data[76:78] = (0x0200).to_bytes(2, "little")  # NFULA_PAYLOAD claims 512 bytes
    records, malformed = decode_datagram(bytes(data))
    assert records == []
    assert malformed == 1


@given(st.binary(max_size=300))
def test_random_bytes_never_raise(data: bytes) -> None:
    records, malformed = decode_datagram(data)
    assert malformed >= 0
    assert all(isinstance(record, LogRecord) for record in records)


@given(st.integers(min_value=20, max_value=len(IPV6_UDP) - 1), st.integers(0, 255))
def test_corrupted_golden_never_raises(index: int, value: int) -> None:
    data = bytearray(IPV6_UDP)
    data[index] = value
    records, malformed = decode_datagram(bytes(data))
    assert len(records) + malformed >= 1


def test_ipv6_hop_by_hop_is_skipped() -> None:
    hop_by_hop = bytes([6, 0]) + bytes.fromhex("010400000000")  # next TCP, PadN
    tcp = (40000).to_bytes(2, "big") + (443).to_bytes(2, "big") + bytes(16)
    summary = parse_ip_packet(ipv6_header(0, 28) + hop_by_hop + tcp)
    assert summary is not None
    assert summary.protocol == "tcp"
    assert summary.sport == 40000
    assert summary.dport == 443


def test_ipv6_routing_then_destination_opts() -> None:
    routing = bytes([60, 2, 0, 0]) + bytes(20)  # next: destination options, 24 bytes
    destination = bytes([17, 0]) + bytes(6)  # next: UDP, 8 bytes
    udp = (40000).to_bytes(2, "big") + (53).to_bytes(2, "big") + bytes(4)
    summary = parse_ip_packet(ipv6_header(43, 40) + routing + destination + udp)
    assert summary is not None
    assert summary.protocol == "udp"
    assert summary.dport == 53


def test_ipv6_first_fragment_has_ports() -> None:
    fragment = bytes([17, 0, 0x00, 0x01]) + bytes(4)  # offset 0, more fragments
    udp = (40000).to_bytes(2, "big") + (53).to_bytes(2, "big") + bytes(4)
    summary = parse_ip_packet(ipv6_header(44, 16) + fragment + udp)
    assert summary is not None
    assert summary.protocol == "udp"
    assert summary.dport == 53


def test_ipv6_later_fragment_has_no_ports() -> None:
    fragment = bytes([17, 0, 0x00, 0x10]) + bytes(4)  # offset 2 (16 bytes)
    summary = parse_ip_packet(ipv6_header(44, 16) + fragment + bytes(8))
    assert summary is not None
    assert summary.protocol == "udp"
    assert summary.sport is None
    assert summary.dport is None


def test_ipv4_later_fragment_has_no_ports() -> None:
    packet = bytearray(ipv4_udp())
    packet[6:8] = (0x0010).to_bytes(2, "big")  # fragment offset 16 (128 bytes)
    summary = parse_ip_packet(bytes(packet))
    assert summary is not None
    assert summary.protocol == "udp"
    assert summary.dport is None


def test_ipv4_icmp_type() -> None:
    packet = bytearray(ipv4_udp())
    packet[9] = 1
    packet[20:28] = bytes.fromhex("0800f7ff00000000")  # echo request
    summary = parse_ip_packet(bytes(packet))
    assert summary is not None
    assert summary.protocol == "icmp"
    assert summary.icmp_type == 8
    assert summary.dport is None


def test_ipv6_icmpv6_type() -> None:
    summary = parse_ip_packet(ipv6_header(58, 8) + bytes.fromhex("8000000000000000"))
    assert summary is not None
    assert summary.protocol == "icmpv6"
    assert summary.icmp_type == 128


def test_unnamed_protocol_is_number() -> None:
    packet = bytearray(ipv4_udp())
    packet[9] = 132  # SCTP
    summary = parse_ip_packet(bytes(packet))
    assert summary is not None
    assert summary.protocol == 132
    assert summary.sport is None


def test_transport_cut_short_has_no_ports() -> None:
    summary = parse_ip_packet(ipv4_udp()[:22])
    assert summary is not None
    assert summary.protocol == "udp"
    assert summary.sport is None


@pytest.mark.parametrize(
    "payload", [b"", bytes.fromhex("4500"), ipv4_udp()[:19], ipv6_header(17, 8)[:39]]
)
def test_short_ip_header_is_none(payload: bytes) -> None:
    assert parse_ip_packet(payload) is None


def test_ipv4_bad_ihl_is_none() -> None:
    packet = bytearray(ipv4_udp())
    packet[0] = 0x44  # IHL 4: shorter than the fixed header
    assert parse_ip_packet(bytes(packet)) is None


def test_sequence_contiguous_no_gap() -> None:
    tracker = SequenceTracker()
    assert [tracker.observe(seq) for seq in (0, 1, 2)] == [0, 0, 0]


def test_sequence_gap_counts_missing() -> None:
    tracker = SequenceTracker()
    tracker.observe(0)
    assert tracker.observe(5) == 4


def test_sequence_first_message_late() -> None:
    assert SequenceTracker().observe(3) == 3


def test_sequence_wraps_at_32_bits() -> None:
    tracker = SequenceTracker(expected=0xFFFFFFFF)
    assert tracker.observe(0xFFFFFFFF) == 0
    assert tracker.observe(0) == 0


def test_sequence_backwards_is_not_loss() -> None:
    tracker = SequenceTracker(expected=10)
    assert tracker.observe(2) == 0
    assert tracker.observe(3) == 0


def test_sequence_absent_is_ignored() -> None:
    tracker = SequenceTracker(expected=4)
    assert tracker.observe(None) == 0
    assert tracker.expected == 4


def test_bind_error_message() -> None:
    error = NflogBindError(7, "bind", errno.EPERM)
    assert error.group == 7
    assert error.errno == errno.EPERM
    assert "group 7" in str(error)
    assert "Another netlink socket" in str(error)


def test_netns_error_message() -> None:
    error = NetnsSwitchError("/run/netns/missing", "open", errno.ENOENT)
    assert error.netns_path == "/run/netns/missing"
    assert "/run/netns/missing" in str(error)
    assert "No such file" in str(error)
