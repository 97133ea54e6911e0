"""NFLOG reception: the kernel's log events of one sandbox netns, decoded into LogRecords.

The sandbox ruleset logs new flows with `log group N`. NFLOG groups belong to a network
namespace (the kernel keeps one instance table per netns), so every sandbox can use the
same group number. A netlink socket stays in the netns it was created in, so
open_in_netns() creates it there on a worker thread and the daemon reads it from its own
event loop with read_loop().

Packets above the ruleset's rate limit never reach NFLOG. The ruleset counts them in an
nft counter, which the daemon reads with its libnftables context in that netns
(`list counter inet runta NAME`). Losses on the netlink path are reported here: gaps in
the NFULA_SEQ numbers and ENOBUFS overruns of the socket receive buffer. Gaps miss losses:
after an overrun, netlink drops every batch until the reader has emptied the queue, so a
loss that no later message follows shows only as one ENOBUFS. The collector therefore
counts losses with an nft counter on the log rules (runtad/audit/lossledger.py).

Config messages (bind, unbind) are encoded with pyroute2's message classes below and sent
on the NFLOG socket itself, whose acknowledgement bind_group() waits for. Packet messages are
decoded by decode_datagram(), which reads the few attributes the audit needs with struct,
because pyroute2's generic decoder took 50 to 140 us per record in bench/audit_ingest.py on
a 2-CPU KVM guest, and a flood brings tens of thousands per second.
decode_datagram_pyroute2() decodes the same way with those classes, and tests check that
both return the same records.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import ipaddress
import mmap
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, NamedTuple, Self

from pyroute2 import netns
from pyroute2.netlink import (
    NETLINK_NETFILTER,
    NLA_F_NESTED,
    NLA_F_NET_BYTEORDER,
    NLM_F_ACK,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    NLMSG_NOOP,
    nla,
)
from pyroute2.netlink.marshal import Marshal
from pyroute2.netlink.nfnetlink import NFNL_SUBSYS_ULOG, nfgen_msg

from .netns import NetnsWorker

# Constants as named in the uapi header linux/netfilter/nfnetlink_log.h.
NFULNL_MSG_PACKET = 0
NFULNL_MSG_CONFIG = 1

NFULNL_CFG_CMD_NONE = 0
NFULNL_CFG_CMD_BIND = 1
NFULNL_CFG_CMD_UNBIND = 2
NFULNL_CFG_CMD_PF_BIND = 3
NFULNL_CFG_CMD_PF_UNBIND = 4

NFULNL_COPY_NONE = 0x00
NFULNL_COPY_META = 0x01
NFULNL_COPY_PACKET = 0x02

NFULNL_CFG_F_SEQ = 0x0001
NFULNL_CFG_F_SEQ_GLOBAL = 0x0002
NFULNL_CFG_F_CONNTRACK = 0x0004

# The nlmsg_type of nfnetlink messages carries the subsystem in its high byte.
NFULNL_PACKET_TYPE = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET
NFULNL_CONFIG_TYPE = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG

# Kernel limits from net/netfilter/nfnetlink_log.c (Linux 6.1).
NFULNL_COPY_RANGE_MAX = 0xFFFF - 4
MAX_GROUP = 0xFFFF

# Only headers are needed. An IPv6 header with a hop-by-hop option and the first 8 bytes of
# TCP or UDP fit in 128 bytes.
DEFAULT_COPY_RANGE = 128
# The kernel batches messages until QTHRESH are queued, NLBUFSIZ bytes are filled, or the
# flush timeout (in 1/100 s) ends. Batches save receive-buffer space during a flood.
NLBUFSIZ = 16384
QTHRESH = 32
FLUSH_TIMEOUT_CS = 10
DEFAULT_RCVBUF = 4 * 1024 * 1024
# The value in asm-generic/socket.h, which x86 and arm use. Some other architectures define
# their own. Python's socket module does not export it.
SO_RCVBUFFORCE = 33
# The kernel sends a batch of about NLBUFSIZ bytes or one message with at most
# NFULNL_COPY_RANGE_MAX payload bytes, so no datagram is larger than this. Each reading
# thread has one such buffer (see _receive_buffer), whatever the number of sockets.
RECV_BUFSIZE = 128 * 1024
MAX_DATAGRAMS_PER_READ = 256
OPEN_TIMEOUT = 10.0
# Wait for the kernel's reply to one config message, and datagrams read meanwhile.
CONFIG_ACK_TIMEOUT = 5.0
CONFIG_ACK_MAX_READS = 1024

IP_PROTOCOL_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6"}
# IPv6 extension headers whose length is (hdr_ext_len + 1) * 8: hop-by-hop, routing,
# destination options. The fragment header is 8 bytes, AH is (hdr_ext_len + 2) * 4.
IPV6_EXT_OPTIONS = {0, 43, 60}
IPV6_EXT_FRAGMENT = 44
IPV6_EXT_AH = 51
MAX_IPV6_EXT_HEADERS = 8


class nfulnl_packet_msg(nfgen_msg):
    """NFULNL_MSG_PACKET: one logged packet. res_id carries the group number."""

    nla_map = (
        (0, "NFULA_UNSPEC", "none"),
        (1, "NFULA_PACKET_HDR", "nfulnl_msg_packet_hdr"),
        (2, "NFULA_MARK", "be32"),
        (3, "NFULA_TIMESTAMP", "nfulnl_msg_packet_timestamp"),
        (4, "NFULA_IFINDEX_INDEV", "be32"),
        (5, "NFULA_IFINDEX_OUTDEV", "be32"),
        (6, "NFULA_IFINDEX_PHYSINDEV", "be32"),
        (7, "NFULA_IFINDEX_PHYSOUTDEV", "be32"),
        (8, "NFULA_HWADDR", "nfulnl_msg_packet_hw"),
        (9, "NFULA_PAYLOAD", "cdata"),
        (10, "NFULA_PREFIX", "asciiz"),
        (11, "NFULA_UID", "be32"),
        (12, "NFULA_SEQ", "be32"),
        (13, "NFULA_SEQ_GLOBAL", "be32"),
        (14, "NFULA_GID", "be32"),
        (15, "NFULA_HWTYPE", "be16"),
        (16, "NFULA_HWHEADER", "cdata"),
        (17, "NFULA_HWLEN", "be16"),
        # Conntrack attributes of linux/netfilter/nfnetlink_conntrack.h, kept raw because
        # bind_group() never sets NFULNL_CFG_F_CONNTRACK.
        (18, "NFULA_CT", "cdata"),
        (19, "NFULA_CT_INFO", "be32"),
        (20, "NFULA_VLAN", "nfulnl_vlan"),
        (21, "NFULA_L2HDR", "cdata"),
    )

    class nfulnl_msg_packet_hdr(nla):
        fields = (("hw_protocol", ">H"), ("hook", "B"), ("_pad", "x"))

    class nfulnl_msg_packet_hw(nla):
        fields = (("hw_addrlen", ">H"), ("_pad", "2x"), ("hw_addr", "8s"))

    class nfulnl_msg_packet_timestamp(nla):
        fields = (("sec", ">Q"), ("usec", ">Q"))

    class nfulnl_vlan(nla):
        nla_map = (
            (0, "NFULA_VLAN_UNSPEC", "none"),
            (1, "NFULA_VLAN_PROTO", "be16"),
            (2, "NFULA_VLAN_TCI", "be16"),
        )


class nfulnl_config_msg(nfgen_msg):
    """NFULNL_MSG_CONFIG: binds or configures the group in res_id."""

    nla_map = (
        (0, "NFULA_CFG_UNSPEC", "none"),
        (1, "NFULA_CFG_CMD", "nfulnl_msg_config_cmd"),
        (2, "NFULA_CFG_MODE", "nfulnl_msg_config_mode"),
        (3, "NFULA_CFG_NLBUFSIZ", "be32"),
        (4, "NFULA_CFG_TIMEOUT", "be32"),
        (5, "NFULA_CFG_QTHRESH", "be32"),
        (6, "NFULA_CFG_FLAGS", "be16"),
    )

    class nfulnl_msg_config_cmd(nla):
        fields = (("command", "B"),)

    class nfulnl_msg_config_mode(nla):
        fields = (("copy_range", ">I"), ("copy_mode", "B"), ("_pad", "x"))


class NflogMarshal(Marshal):
    msg_map: ClassVar[dict[int, type]] = {
        NFULNL_PACKET_TYPE: nfulnl_packet_msg,
        NFULNL_CONFIG_TYPE: nfulnl_config_msg,
    }


def build_config_msg(family: int, group: int, attrs: list[list[object]]) -> nfulnl_config_msg:
    """Build an NFULNL_MSG_CONFIG message for `group` with the given NFULA_CFG_* attributes."""
    msg = nfulnl_config_msg()
    msg["nfgen_family"] = family
    msg["version"] = 0
    msg["res_id"] = group
    msg["attrs"] = attrs
    return msg


def build_bind_msg(group: int, copy_range: int) -> nfulnl_config_msg:
    """Build the one message that binds `group` and configures it.

    The kernel creates the instance for NFULA_CFG_CMD and then applies the other
    attributes of the same message, so no packet is logged with a half-done setup.
    """
    return build_config_msg(
        socket.AF_UNSPEC,
        group,
        [
            ["NFULA_CFG_CMD", {"command": NFULNL_CFG_CMD_BIND}],
            ["NFULA_CFG_MODE", {"copy_range": copy_range, "copy_mode": NFULNL_COPY_PACKET}],
            ["NFULA_CFG_NLBUFSIZ", NLBUFSIZ],
            ["NFULA_CFG_TIMEOUT", FLUSH_TIMEOUT_CS],
            ["NFULA_CFG_QTHRESH", QTHRESH],
            ["NFULA_CFG_FLAGS", NFULNL_CFG_F_SEQ],
        ],
    )


class LogRecord(NamedTuple):
    """One packet logged by a `log group` rule, with the IP and transport header fields.

    A NamedTuple rather than a frozen dataclass, because a flood decodes tens of thousands
    per second and a frozen dataclass of 13 fields takes about four times as long to build.
    """

    prefix: str
    family: int
    protocol: str | int
    src: str
    dst: str
    sport: int | None
    dport: int | None
    uid: int | None
    gid: int | None
    seq: int | None
    timestamp: float | None
    icmp_type: int | None = None
    # The kernel adds NFULA_MARK only when the packet's mark is not 0.
    mark: int | None = None


@dataclass(frozen=True)
class IpSummary:
    """Fields of a packet's IP header and of its transport header, where present."""

    family: int
    protocol: str | int
    src: str
    dst: str
    sport: int | None = None
    dport: int | None = None
    icmp_type: int | None = None


# The fields of IpSummary in their order, as the decoders pass them around without the
# cost of building an object.
IpFields = tuple[int, str | int, str, str, int | None, int | None, int | None]

_BE16 = struct.Struct(">H")
_BE32 = struct.Struct(">I")
_PORTS = struct.Struct(">HH")
_TIMESTAMP = struct.Struct(">QQ")  # struct nfulnl_msg_packet_timestamp: sec, usec


def parse_ip_packet(payload: bytes) -> IpSummary | None:
    """Parse the IP header and the ports or ICMP type. Return None if the IP header is cut short.

    Ports stay None for non-first fragments and when the copied bytes end before them.
    """
    fields = parse_ip_fields(payload)
    return IpSummary(*fields) if fields is not None else None


def parse_ip_fields(payload: bytes) -> IpFields | None:
    """Parse like parse_ip_packet(), but return the fields as a tuple."""
    if not payload:
        return None
    version = payload[0] >> 4
    if version == 4:
        return _parse_ipv4(payload)
    if version == 6:
        return _parse_ipv6(payload)
    return None


def _parse_ipv4(payload: bytes) -> IpFields | None:
    header_len = (payload[0] & 0x0F) * 4
    if len(payload) < 20 or header_len < 20:
        return None
    protocol = payload[9]
    src = socket.inet_ntop(socket.AF_INET, payload[12:16])
    dst = socket.inet_ntop(socket.AF_INET, payload[16:20])
    fragment_offset = _BE16.unpack_from(payload, 6)[0] & 0x1FFF
    transport = header_len if fragment_offset == 0 else len(payload)
    return _with_transport(4, protocol, src, dst, payload, transport)


def _parse_ipv6(payload: bytes) -> IpFields | None:
    if len(payload) < 40:
        return None
    src = format_ipv6(payload[8:24])
    dst = format_ipv6(payload[24:40])
    next_header = payload[6]
    offset = 40
    for _ in range(MAX_IPV6_EXT_HEADERS):
        if next_header in IPV6_EXT_OPTIONS and offset + 2 <= len(payload):
            length = (payload[offset + 1] + 1) * 8
        elif next_header == IPV6_EXT_AH and offset + 2 <= len(payload):
            length = (payload[offset + 1] + 2) * 4
        elif next_header == IPV6_EXT_FRAGMENT and offset + 8 <= len(payload):
            length = 8
            if _BE16.unpack_from(payload, offset + 2)[0] >> 3:
                # A non-first fragment carries no transport header.
                return _with_transport(6, payload[offset], src, dst, payload, len(payload))
        else:
            break
        next_header = payload[offset]
        offset += length
    # NOTE: when the copied bytes end inside the extension headers, protocol is the
    # number of the header where parsing stopped and the ports stay None.
    return _with_transport(6, next_header, src, dst, payload, offset)


def format_ipv6(packed: bytes) -> str:
    """Format a 16-byte IPv6 address as str(ipaddress.IPv6Address(packed)) does, but faster."""
    text = socket.inet_ntop(socket.AF_INET6, packed)
    # glibc writes IPv4-mapped and IPv4-compatible addresses with a dotted quad, and
    # ipaddress in Python 3.11 does not. Other addresses get the same RFC 5952 text.
    if "." in text:
        return str(ipaddress.IPv6Address(packed))
    return text


def _with_transport(
    family: int, number: int, src: str, dst: str, payload: bytes, transport: int
) -> IpFields:
    """Add the ports or ICMP type from the transport header at payload[transport:]."""
    protocol = IP_PROTOCOL_NAMES.get(number, number)
    available = len(payload) - transport
    if (protocol == "udp" or protocol == "tcp") and available >= 4:
        sport, dport = _PORTS.unpack_from(payload, transport)
        return (family, protocol, src, dst, sport, dport, None)
    if (protocol == "icmp" or protocol == "icmpv6") and available > 0:
        return (family, protocol, src, dst, None, None, payload[transport])
    return (family, protocol, src, dst, None, None, None)


_CONTROL_TYPES = {NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE}

# Netlink message and attribute headers are in host byte order (linux/netlink.h). The
# NFULA_* values are big-endian (linux/netfilter/nfnetlink_log.h).
_NLMSG_LENGTH_TYPE = struct.Struct("=IH")  # nlmsg_len, nlmsg_type of struct nlmsghdr
_NLMSG_SEQ = struct.Struct("=I")  # nlmsg_seq, at offset 8 of struct nlmsghdr
_NLMSG_ERROR_CODE = struct.Struct("=i")  # error of struct nlmsgerr, after the header
_NLATTR = struct.Struct("=HH")  # nla_len, nla_type of struct nlattr
NLMSG_HDRLEN = 16
NFGENMSG_LEN = 4  # struct nfgenmsg: nfgen_family, version, res_id
NLA_HDRLEN = 4
NLA_TYPE_MASK = 0xFFFF & ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER)

# Attribute numbers from the nla_map of nfulnl_packet_msg, so that both decoders read one table.
_NFULA = {name: number for number, name, _kind in nfulnl_packet_msg.nla_map}
NFULA_MARK = _NFULA["NFULA_MARK"]
NFULA_TIMESTAMP = _NFULA["NFULA_TIMESTAMP"]
NFULA_PAYLOAD = _NFULA["NFULA_PAYLOAD"]
NFULA_PREFIX = _NFULA["NFULA_PREFIX"]
NFULA_UID = _NFULA["NFULA_UID"]
NFULA_SEQ = _NFULA["NFULA_SEQ"]
NFULA_GID = _NFULA["NFULA_GID"]

# Attributes whose value is one big-endian u32.
_BE32_ATTRS = frozenset({NFULA_MARK, NFULA_UID, NFULA_GID, NFULA_SEQ})


class _AttributeTooShort(ValueError):
    pass


def decode_datagram(data: bytes | bytearray | memoryview) -> tuple[list[LogRecord], int]:
    """Decode one NFLOG datagram into records and count the malformed messages in it.

    A batch ends with NLMSG_DONE, and late acknowledgements arrive as NLMSG_ERROR: both are
    skipped without counting. A message that is not an NFLOG packet with an IP payload, or
    whose attributes do not fit it, counts as one malformed message. Bytes that do not form
    whole messages count as one more. The records hold copies, so `data` may be a buffer
    that the caller reuses. This function never raises on bad input.
    """
    view = memoryview(data)
    size = len(view)
    records: list[LogRecord] = []
    malformed = 0
    offset = 0
    # Each message starts where the previous one's nlmsg_len ends, as in pyroute2's
    # Marshal.parse. The kernel pads nlmsg_len to 4 bytes, so that is NLMSG_ALIGN too.
    while offset <= size - NLMSG_HDRLEN:
        length, kind = _NLMSG_LENGTH_TYPE.unpack_from(view, offset)
        if not 0 < length <= size - offset:
            break
        if kind not in _CONTROL_TYPES:
            record = None
            if kind == NFULNL_PACKET_TYPE:
                try:
                    record = _decode_packet(view, offset, offset + length)
                except _AttributeTooShort:
                    pass
            if record is None:
                malformed += 1
            else:
                records.append(record)
        offset += length
    if offset != size:
        malformed += 1
    return records, malformed


def _decode_packet(view: memoryview, start: int, end: int) -> LogRecord | None:
    """Decode the NFULNL_MSG_PACKET in view[start:end], or return None if it has no IP payload.

    The first attribute of each type counts, as with pyroute2's get_attr(). Raises
    _AttributeTooShort when a fixed-size value is cut short.
    """
    values: dict[int, int] = {}
    payload: bytes | None = None
    prefix: bytes | None = None
    timestamp: float | None = None
    seen = 0  # bit N is set once an attribute of type N was read
    offset = start + NLMSG_HDRLEN + NFGENMSG_LEN
    while offset + NLA_HDRLEN <= end:
        length, kind = _NLATTR.unpack_from(view, offset)
        if length < NLA_HDRLEN or offset + length > end:
            return None
        kind &= NLA_TYPE_MASK
        if not seen >> kind & 1:
            seen |= 1 << kind
            if kind == NFULA_PAYLOAD:
                payload = bytes(view[offset + NLA_HDRLEN : offset + length])
            elif kind in _BE32_ATTRS:
                if length < NLA_HDRLEN + _BE32.size:
                    raise _AttributeTooShort(kind)
                values[kind] = _BE32.unpack_from(view, offset + NLA_HDRLEN)[0]
            elif kind == NFULA_PREFIX:
                prefix = bytes(view[offset + NLA_HDRLEN : offset + length])
            elif kind == NFULA_TIMESTAMP:
                if length < NLA_HDRLEN + _TIMESTAMP.size:
                    raise _AttributeTooShort(kind)
                seconds, microseconds = _TIMESTAMP.unpack_from(view, offset + NLA_HDRLEN)
                timestamp = seconds + microseconds / 1e6
        offset += (length + 3) & ~3

    fields = parse_ip_fields(payload) if payload is not None else None
    if fields is None:
        return None
    family, protocol, src, dst, sport, dport, icmp_type = fields
    return LogRecord(
        _prefix_text(prefix), family, protocol, src, dst, sport, dport,
        values.get(NFULA_UID), values.get(NFULA_GID), values.get(NFULA_SEQ), timestamp,
        icmp_type, values.get(NFULA_MARK),
    )


# Decoded prefixes by their raw bytes. A ruleset has a few log prefixes, so a flood decodes
# the same few again and again. The bound keeps foreign prefixes from growing the cache.
_prefix_texts: dict[bytes, str] = {}
PREFIX_CACHE_MAX = 64


def _prefix_text(raw: bytes | None) -> str:
    if raw is None:
        return ""
    text = _prefix_texts.get(raw)
    if text is None:
        # The kernel sends the prefix NUL-terminated. NOTE: bytes that are not UTF-8 become
        # U+FFFD here, where pyroute2 returns the raw bytes.
        text = raw.strip(b"\0").decode("utf-8", "replace")
        if len(_prefix_texts) < PREFIX_CACHE_MAX:
            _prefix_texts[raw] = text
    return text


_MARSHAL = NflogMarshal()


def record_from_msg(msg: nfulnl_packet_msg) -> LogRecord | None:
    """Build a LogRecord from a message decoded by pyroute2, or None if it has no IP payload."""
    summary = parse_ip_packet(msg.get_attr("NFULA_PAYLOAD") or b"")
    if summary is None:
        return None
    stamp = msg.get_attr("NFULA_TIMESTAMP")
    # Linux 6.1 adds NFULA_TIMESTAMP only on the prerouting, input and forward hooks.
    timestamp = stamp["sec"] + stamp["usec"] / 1e6 if stamp is not None else None
    return LogRecord(
        prefix=msg.get_attr("NFULA_PREFIX") or "",
        family=summary.family,
        protocol=summary.protocol,
        src=summary.src,
        dst=summary.dst,
        sport=summary.sport,
        dport=summary.dport,
        uid=msg.get_attr("NFULA_UID"),
        gid=msg.get_attr("NFULA_GID"),
        seq=msg.get_attr("NFULA_SEQ"),
        timestamp=timestamp,
        icmp_type=summary.icmp_type,
        mark=msg.get_attr("NFULA_MARK"),
    )


def decode_datagram_pyroute2(data: bytes) -> tuple[list[LogRecord], int]:
    """Decode like decode_datagram() with pyroute2's generic decoder, the slow reference for tests.

    On well-formed datagrams both return the same. On malformed ones the counts may differ,
    because pyroute2 reads a message whose nlmsg_len runs past the datagram.
    """
    records: list[LogRecord] = []
    malformed = 0
    consumed = 0
    try:
        for msg in _MARSHAL.parse(data):
            header = msg["header"]
            consumed += header["length"]
            if header["type"] in _CONTROL_TYPES:
                continue
            if header["type"] != NFULNL_PACKET_TYPE or header.get("error") is not None:
                malformed += 1
                continue
            record = record_from_msg(msg)
            if record is None:
                malformed += 1
            else:
                records.append(record)
    except Exception:  # noqa: BLE001 - pyroute2 raises struct.error, IndexError and others
        # on corrupt input, and no kernel message may stop the reader.
        return records, malformed + 1
    if consumed != len(data):
        malformed += 1
    return records, malformed


@dataclass
class SequenceTracker:
    """Counts NFULA_SEQ numbers that never arrived.

    A fresh instance numbers its messages from 0, so messages lost before the first read
    (or read while bind_group() waits for the ack) also show up as a gap.
    """

    expected: int = 0

    def observe(self, seq: int | None) -> int:
        """Record `seq` and return how many sequence numbers were skipped before it."""
        if seq is None:
            return 0
        missed = (seq - self.expected) & 0xFFFFFFFF
        self.expected = (seq + 1) & 0xFFFFFFFF
        # A step backwards (more than half the 32-bit space ahead) is a restart, not a loss.
        return missed if missed < 0x80000000 else 0


@dataclass
class NflogStats:
    """Totals since the group was bound."""

    datagrams: int = 0
    records: int = 0
    malformed: int = 0
    seq_gaps: int = 0
    overruns: int = 0

    @property
    def lost(self) -> int:
        """Skipped sequence numbers plus overruns; nonzero means that events were lost."""
        return self.seq_gaps + self.overruns


class NflogError(Exception):
    """Base class for NFLOG socket errors."""


class NflogBindError(NflogError):
    """The kernel rejected an NFLOG config message."""

    HINTS: ClassVar[dict[int, str]] = {
        errno.EPERM: "Another netlink socket in this netns has bound the group, so close that "
        "socket or pick another group.",
        errno.EBUSY: "This socket has already bound the group.",
        errno.ENODEV: "The group is not bound.",
    }

    def __init__(self, group: int, command: str, code: int) -> None:
        self.group = group
        self.command = command
        self.errno = code
        hint = self.HINTS.get(code, "Check that the kernel has nfnetlink_log.")
        super().__init__(f"NFLOG {command} of group {group} failed: {os.strerror(code)}. {hint}")


class NetnsSwitchError(NflogError):
    """The worker thread could not enter the netns, or could not return from it."""

    def __init__(self, netns_path: str, step: str, code: int) -> None:
        self.netns_path = netns_path
        self.step = step
        self.errno = code
        super().__init__(
            f"failed to {step} network namespace {netns_path}: {os.strerror(code)}. Check that "
            "the path names a netns (for example /run/netns/NAME) and that runtad runs as root."
        )


class NflogOpenTimeout(NflogError, TimeoutError):
    def __init__(self, netns_path: str, timeout: float) -> None:
        self.netns_path = netns_path
        self.timeout = timeout
        super().__init__(
            f"opening the NFLOG socket in {netns_path} timed out after {timeout} s. "
            "The worker thread closes the socket when it finishes."
        )


class NflogConfigTimeout(NflogError, TimeoutError):
    """The kernel did not acknowledge an NFLOG config message in time."""

    def __init__(self, group: int, command: str, timeout: float) -> None:
        self.group = group
        self.command = command
        self.timeout = timeout
        super().__init__(
            f"NFLOG {command} of group {group} got no acknowledgement within {timeout} s. "
            "Check that the kernel has nfnetlink_log and that the machine is not overloaded."
        )


def encode_config(msg: nfulnl_config_msg, sequence: int) -> bytes:
    """Encode a config message as a request with NLM_F_ACK set, numbered `sequence`."""
    msg["header"]["type"] = NFULNL_CONFIG_TYPE
    msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK
    msg["header"]["sequence_number"] = sequence
    msg["header"]["pid"] = 0
    msg.encode()
    return bytes(msg.data)


def find_ack(data: bytes | bytearray | memoryview, sequence: int) -> int | None:
    """Return the error code of the NLMSG_ERROR for `sequence` in a datagram, 0 for an ack.

    Returns None when the datagram contains no reply to that request, as with a batch of
    logged packets that arrived first. The code is the errno, positive.
    """
    view = memoryview(data)
    offset = 0
    while offset <= len(view) - NLMSG_HDRLEN:
        length, kind = _NLMSG_LENGTH_TYPE.unpack_from(view, offset)
        if not NLMSG_HDRLEN <= length <= len(view) - offset:
            return None
        if kind == NLMSG_ERROR and length >= NLMSG_HDRLEN + 4:
            (answered,) = _NLMSG_SEQ.unpack_from(view, offset + 8)
            if answered == sequence:
                (code,) = _NLMSG_ERROR_CODE.unpack_from(view, offset + NLMSG_HDRLEN)
                return -code
        offset += (length + 3) & ~3
    return None


class NflogSocket:
    """An NFLOG subscription of the netns where the socket was created.

    Create it and call bind_group() off the event loop (open_in_netns() does both on a
    worker thread). Then read it from one thread, for example with read_loop().
    """

    def __init__(self, rcvbuf: int = DEFAULT_RCVBUF) -> None:
        self._socket = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_NETFILTER)
        try:
            self._socket.bind((0, 0))  # the kernel picks a free port id
            _set_rcvbuf(self._socket, rcvbuf)
            self._socket.setblocking(False)
        except OSError:
            self._socket.close()
            raise
        self.group: int | None = None
        self.stats = NflogStats()
        self.sequence = SequenceTracker()
        self._sequence = 0  # of the last config request

    def fileno(self) -> int:
        return self._socket.fileno()

    def bind_group(
        self, group: int, copy_range: int = DEFAULT_COPY_RANGE, *, bind_pf: bool = False
    ) -> None:
        """Bind the NFLOG group and request header copies with sequence numbers.

        Current kernels (nf_log_packet in Linux 6.x) pick the logger of a `log group` rule
        by type, so they need no PF_BIND. PF_BIND makes nfnetlink_log the netns default
        logger for AF_INET and AF_INET6, which older kernels need. Set `bind_pf` for those.
        Blocks until the kernel acknowledges, so call it off the event loop.
        """
        if not 0 <= group <= MAX_GROUP:
            raise ValueError(f"NFLOG group {group} is out of range. Use 0 to {MAX_GROUP}.")
        if not 1 <= copy_range <= NFULNL_COPY_RANGE_MAX:
            raise ValueError(
                f"copy_range {copy_range} is out of range. Use 1 to {NFULNL_COPY_RANGE_MAX}."
            )
        _require_no_running_loop("bind_group")
        messages = []
        # NOTE: bind_pf has run only on Linux 6.18, which does not need it. The kernel
        # versions that still need it are not pinned down here.
        if bind_pf:
            for family in (socket.AF_INET, socket.AF_INET6):
                for name, command in (
                    ("pf_unbind", NFULNL_CFG_CMD_PF_UNBIND),
                    ("pf_bind", NFULNL_CFG_CMD_PF_BIND),
                ):
                    attrs: list[list[object]] = [["NFULA_CFG_CMD", {"command": command}]]
                    messages.append((name, build_config_msg(family, 0, attrs)))
        messages.append(("bind", build_bind_msg(group, copy_range)))
        self._send_config(group, messages)
        self.group = group
        self.stats = NflogStats()
        self.sequence = SequenceTracker()

    def unbind_group(self) -> None:
        """Unbind the group bound by bind_group(). Closing the socket also unbinds it."""
        if self.group is None:
            return
        _require_no_running_loop("unbind_group")
        attrs: list[list[object]] = [["NFULA_CFG_CMD", {"command": NFULNL_CFG_CMD_UNBIND}]]
        unbind = build_config_msg(socket.AF_UNSPEC, self.group, attrs)
        self._send_config(self.group, [("unbind", unbind)])
        self.group = None

    def _send_config(self, group: int, messages: list[tuple[str, nfulnl_config_msg]]) -> None:
        """Send each message and wait for its acknowledgement, on a duplicate with a timeout.

        Datagrams read while waiting are dropped: logged packets among them show up as a
        sequence gap, as with any loss.
        """
        # The duplicate shares the file description, which stays non-blocking: a socket
        # with a timeout waits in poll().
        with socket.socket(fileno=os.dup(self._socket.fileno())) as duplicate:
            duplicate.settimeout(CONFIG_ACK_TIMEOUT)
            for command, msg in messages:
                self._sequence = (self._sequence + 1) & 0xFFFFFFFF
                duplicate.send(encode_config(msg, self._sequence))
                code = self._wait_for_ack(duplicate, group, command)
                if code:
                    raise NflogBindError(group, command, code)

    def _wait_for_ack(self, duplicate: socket.socket, group: int, command: str) -> int:
        buffer = _receive_buffer()
        deadline = time.monotonic() + CONFIG_ACK_TIMEOUT
        for _ in range(CONFIG_ACK_MAX_READS):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            duplicate.settimeout(remaining)
            try:
                size = duplicate.recv_into(buffer)
            except TimeoutError:
                break
            except OSError as error:
                if error.errno != errno.ENOBUFS:
                    raise
                continue  # an overrun of logged packets; the ack is still to come
            code = find_ack(buffer[:size], self._sequence)
            if code is not None:
                return code
        raise NflogConfigTimeout(group, command, CONFIG_ACK_TIMEOUT)

    def read_pending(
        self, max_datagrams: int = MAX_DATAGRAMS_PER_READ
    ) -> tuple[list[LogRecord], int]:
        """Read and decode pending datagrams, returning the records and the lost-event count.

        Reads at most `max_datagrams` datagrams and never blocks. Lost is the number of
        skipped NFULA_SEQ numbers plus one per ENOBUFS overrun. The kernel reports an
        overrun once, when it dropped messages because the receive buffer was full, and the
        exact loss is known only when the next numbered message arrives. So zero means that
        the kernel reported no loss. stats keeps the totals apart.
        """
        buffer = _receive_buffer()
        records: list[LogRecord] = []
        datagrams = overruns = malformed = gaps = 0
        for _ in range(max_datagrams):
            try:
                size = self._socket.recv_into(buffer)
            except BlockingIOError:
                break
            except OSError as error:
                if error.errno != errno.ENOBUFS:
                    raise
                overruns += 1
                continue
            datagrams += 1
            # decode_datagram copies what it keeps, so the buffer can take the next datagram.
            decoded, bad = decode_datagram(buffer[:size])
            malformed += bad
            for record in decoded:
                gaps += self.sequence.observe(record.seq)
            records.extend(decoded)
        self.stats.datagrams += datagrams
        self.stats.records += len(records)
        self.stats.malformed += malformed
        self.stats.seq_gaps += gaps
        self.stats.overruns += overruns
        return records, gaps + overruns

    def close(self) -> None:
        """Close the socket. The kernel then destroys the group's instance."""
        self._socket.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_thread_buffers = threading.local()


def _receive_buffer() -> memoryview:
    """Return the calling thread's RECV_BUFSIZE receive buffer, created on first use.

    One buffer per reading thread, because a buffer per socket would cost RECV_BUFSIZE
    for every sandbox. It is anonymous mmap memory, so the kernel backs only the pages
    that a datagram has written, about NLBUFSIZ bytes with the default settings.
    """
    buffer: memoryview | None = getattr(_thread_buffers, "view", None)
    if buffer is None:
        buffer = memoryview(mmap.mmap(-1, RECV_BUFSIZE))
        _thread_buffers.view = buffer
    return buffer


def _set_rcvbuf(sock: socket.socket, size: int) -> None:
    # SO_RCVBUFFORCE ignores net.core.rmem_max but needs CAP_NET_ADMIN. Without it, the
    # kernel caps SO_RCVBUF at rmem_max.
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


def _require_no_running_loop(method: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        f"NflogSocket.{method} blocks until the kernel answers. Call it from a "
        "worker thread, as open_in_netns does, not from a coroutine."
    )


async def read_loop(sock: NflogSocket, on_records: Callable[[list[LogRecord], int], None]) -> None:
    """Call on_records(records, lost) whenever the socket has data, until cancelled.

    Each wakeup reads at most MAX_DATAGRAMS_PER_READ datagrams, so a flood cannot hold the
    event loop. A recv error other than ENOBUFS, or an exception from on_records, ends the
    loop with that exception. Cancel the task before closing the socket.
    """
    loop = asyncio.get_running_loop()
    failed: asyncio.Future[None] = loop.create_future()

    def on_readable() -> None:
        try:
            records, lost = sock.read_pending()
            if records or lost:
                on_records(records, lost)
        except Exception as error:  # noqa: BLE001 - handed to the awaiting task
            if not failed.done():
                failed.set_exception(error)

    fd = sock.fileno()
    loop.add_reader(fd, on_readable)
    try:
        await failed
    finally:
        loop.remove_reader(fd)


def open_bound(
    group: int, *, copy_range: int = DEFAULT_COPY_RANGE, rcvbuf: int = DEFAULT_RCVBUF, bind_pf: bool = False
) -> NflogSocket:
    """Create an NflogSocket in the calling thread's netns and bind `group`; blocks for the ack.

    For a thread that is in the sandbox's netns already, such as a pool thread in a
    sandbox's start pass (runtad/kernelstart.py).
    """
    sock = NflogSocket(rcvbuf=rcvbuf)
    try:
        sock.bind_group(group, copy_range, bind_pf=bind_pf)
    except BaseException:
        sock.close()
        raise
    return sock


def open_in_netns(
    netns_path: str,
    group: int,
    *,
    copy_range: int = DEFAULT_COPY_RANGE,
    rcvbuf: int = DEFAULT_RCVBUF,
    bind_pf: bool = False,
    timeout: float = OPEN_TIMEOUT,
) -> NflogSocket:
    """Create an NflogSocket inside the netns at `netns_path` and bind `group`.

    The namespace switch happens on a long-lived worker thread, never on the caller's.
    The call blocks until the kernel has acknowledged the bind, so a coroutine should run
    it with asyncio.to_thread().
    """
    create = functools.partial(open_bound, group, copy_range=copy_range, rcvbuf=rcvbuf, bind_pf=bind_pf)
    return _call_in_netns(netns_path, create, timeout)


def _call_in_netns(
    netns_path: str, create: Callable[[], NflogSocket], timeout: float
) -> NflogSocket:
    """Call create inside the netns on the open worker; close a socket that arrives after timeout."""
    # The worker thread starts from the daemon's own netns and _create_in_netns switches
    # to the sandbox's, so a failed switch raises NetnsSwitchError naming the step.
    future = _OPEN_WORKER.submit(DAEMON_NETNS, lambda: _create_in_netns(netns_path, create))
    try:
        return future.result(timeout)
    except FutureTimeoutError:
        future.add_done_callback(_close_late_socket)
        raise NflogOpenTimeout(netns_path, timeout) from None


def _close_late_socket(future: Future[NflogSocket]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().close()


# Opens sockets for open_in_netns: one long-lived thread, where a thread per open cost
# about a millisecond to start.
_OPEN_WORKER = NetnsWorker("nflog-open", 1)
DAEMON_NETNS = Path("/proc/self/ns/net")


def _create_in_netns(netns_path: str, create: Callable[[], NflogSocket]) -> NflogSocket:
    # setns(2) with CLONE_NEWNET moves only the calling thread.
    own_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            target_fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as error:
            raise NetnsSwitchError(netns_path, "open", error.errno or errno.EINVAL) from error
        try:
            netns.setns(target_fd)
        except OSError as error:
            raise NetnsSwitchError(netns_path, "enter", error.errno or errno.EINVAL) from error
        finally:
            os.close(target_fd)
        result: NflogSocket | None = None
        try:
            result = create()
        finally:
            try:
                netns.setns(own_fd)
            except OSError as error:
                if result is not None:
                    result.close()
                raise NetnsSwitchError(
                    netns_path, "return from", error.errno or errno.EINVAL
                ) from error
        return result
    finally:
        os.close(own_fd)
