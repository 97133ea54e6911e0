"""NFLOG config requests as bytes, and finding the kernel's answer among datagrams."""

from __future__ import annotations

import errno
import struct

from runtad import nflog
from runtad.nflog import NFULNL_CONFIG_TYPE, build_bind_msg, encode_config, find_ack

NLMSG_ERROR = 2
HEADER = struct.Struct("=IHHII")


def error_message(sequence: int, code: int) -> bytes:
    """An NLMSG_ERROR answering `sequence`, with the request's header echoed."""
    echoed = HEADER.pack(16, NFULNL_CONFIG_TYPE, 5, sequence, 0)
    body = struct.pack("=i", code) + echoed
    return HEADER.pack(16 + len(body), NLMSG_ERROR, 0, sequence, 0) + body


def packet_message() -> bytes:
    return HEADER.pack(20, nflog.NFULNL_PACKET_TYPE, 0, 0, 0) + bytes(4)


def test_encode_config_header() -> None:
    data = encode_config(build_bind_msg(7, 128), 42)
    length, kind, flags, sequence, _pid = HEADER.unpack_from(data)
    assert (length, kind, flags, sequence) == (len(data), NFULNL_CONFIG_TYPE, 0x1 | 0x4, 42)


def test_encode_config_group() -> None:
    data = encode_config(build_bind_msg(7, 128), 1)
    # struct nfgenmsg follows the header; res_id is big-endian.
    assert struct.unpack_from(">H", data, 18)[0] == 7


def test_find_ack_zero() -> None:
    assert find_ack(error_message(3, 0), 3) == 0


def test_find_ack_error_code() -> None:
    assert find_ack(error_message(3, -errno.EPERM), 3) == errno.EPERM


def test_find_ack_other_sequence() -> None:
    assert find_ack(error_message(2, 0), 3) is None


def test_find_ack_after_packet() -> None:
    assert find_ack(packet_message() + error_message(9, -errno.EBUSY), 9) == errno.EBUSY


def test_find_ack_packets_only() -> None:
    assert find_ack(packet_message() * 2, 1) is None


def test_find_ack_truncated() -> None:
    assert find_ack(error_message(3, 0)[:12], 3) is None
