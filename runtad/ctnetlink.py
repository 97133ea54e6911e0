"""Conntrack over netlink (ctnetlink): dump the table and delete entries, decoding little.

A dump decodes only the attributes that end_denied_flows reads: the original
destination, the reply source, and the raw bytes that identify an entry for a delete.
Deletes go out many to one send, each with its own acknowledgement. Decoding every
attribute of every entry in Python (pyroute2's Conntrack.dump_entries) made enabling
enforcement take seconds once the table had thousands of entries.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Self

# linux/netlink.h
NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_DUMP = 0x300
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF

# linux/netfilter/nfnetlink.h
NFNETLINK_V0 = 0
NFNL_SUBSYS_CTNETLINK = 1

# linux/netfilter/nfnetlink_conntrack.h
IPCTNL_MSG_CT_NEW = 0
IPCTNL_MSG_CT_GET = 1
IPCTNL_MSG_CT_DELETE = 2
CTA_TUPLE_ORIG = 1
CTA_TUPLE_REPLY = 2
CTA_TIMEOUT = 7
CTA_ID = 12
CTA_ZONE = 18
CTA_TUPLE_IP = 1
CTA_TUPLE_PROTO = 2
CTA_PROTO_NUM = 1
CTA_PROTO_SRC_PORT = 2
CTA_PROTO_DST_PORT = 3
CTA_IP_V4_SRC = 1
CTA_IP_V4_DST = 2
CTA_IP_V6_SRC = 3
CTA_IP_V6_DST = 4

# Kernel structs, in host byte order as the kernel sends them.
NLMSGHDR = struct.Struct("=IHHII")  # struct nlmsghdr: len, type, flags, seq, pid
NFGENMSG = struct.Struct("=BBH")  # struct nfgenmsg: family, version, res_id (big-endian, 0 here)
NLATTR = struct.Struct("=HH")  # struct nlattr: len, type
NLMSGERR_ERROR = struct.Struct("=i")  # struct nlmsgerr starts with a negative errno

# The attributes of an entry that a delete sends back, copied as they came in the dump.
# CTA_ID makes the kernel delete only that entry, not a newer one with the same tuple.
DELETE_KEY_ATTRIBUTES = frozenset({CTA_TUPLE_ORIG, CTA_ZONE, CTA_ID})

RECEIVE_BUFFER_BYTES = 1 << 20
REQUESTS_PER_SEND = 256
SOCKET_TIMEOUT_SECONDS = 5.0


class ConntrackNetlinkError(OSError):
    """The kernel returned an error for a ctnetlink request."""

    def __init__(self, request: str, error_number: int) -> None:
        super().__init__(
            error_number,
            f"conntrack {request} failed: {errno.errorcode.get(error_number, str(error_number))}"
            f" ({error_number}); check that nf_conntrack is loaded and runtad has CAP_NET_ADMIN",
        )
        self.request = request


@dataclass(frozen=True)
class FlowTuple:
    """One direction of a flow: addresses as text, ports of TCP or UDP."""

    source: str
    destination: str
    protocol: int  # IPPROTO_TCP or IPPROTO_UDP
    source_port: int
    destination_port: int

    def reverse(self) -> FlowTuple:
        return FlowTuple(self.destination, self.source, self.protocol, self.destination_port, self.source_port)


@dataclass(frozen=True)
class ConntrackEntry:
    """The parts of one conntrack entry that decide whether its flow is ended."""

    family: int
    # Packed addresses (4 or 16 bytes), None when the dump left them out.
    original_destination: bytes | None
    reply_source: bytes | None
    # CTA_TUPLE_ORIG, CTA_ZONE and CTA_ID as raw attributes, for a delete request.
    delete_key: bytes


def iter_attributes(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """Yield (type without flags, payload start, payload end) of the nlattrs in data[start:end]."""
    offset = start
    while offset + NLATTR.size <= end:
        length, kind = NLATTR.unpack_from(data, offset)
        if length < NLATTR.size or offset + length > end:
            return
        yield kind & NLA_TYPE_MASK, offset + NLATTR.size, offset + length
        offset += (length + 3) & ~3


def find_address(data: bytes, start: int, end: int, kinds: tuple[int, int]) -> bytes | None:
    """Return the address attribute of a CTA_TUPLE_* payload whose type is in kinds."""
    for kind, payload_start, payload_end in iter_attributes(data, start, end):
        if kind != CTA_TUPLE_IP:
            continue
        for ip_kind, ip_start, ip_end in iter_attributes(data, payload_start, payload_end):
            if ip_kind in kinds:
                return data[ip_start:ip_end]
    return None


def parse_entry(data: bytes, start: int, end: int) -> ConntrackEntry:
    """Decode one IPCTNL_MSG_CT_NEW message of a dump; start is where its nfgenmsg begins."""
    family = NFGENMSG.unpack_from(data, start)[0]
    destination = None
    reply_source = None
    key = bytearray()
    for kind, payload_start, payload_end in iter_attributes(data, start + NFGENMSG.size, end):
        if kind == CTA_TUPLE_ORIG:
            destination = find_address(data, payload_start, payload_end, (CTA_IP_V4_DST, CTA_IP_V6_DST))
        elif kind == CTA_TUPLE_REPLY:
            reply_source = find_address(data, payload_start, payload_end, (CTA_IP_V4_SRC, CTA_IP_V6_SRC))
        if kind in DELETE_KEY_ATTRIBUTES:
            attribute_start = payload_start - NLATTR.size
            key += data[attribute_start:payload_end]
            key += bytes(-len(key) % 4)
    return ConntrackEntry(family, destination, reply_source, bytes(key))


def iter_messages(data: bytes) -> Iterator[tuple[int, int, int, int]]:
    """Yield (type, sequence number, payload start, message end) of each netlink message."""
    offset = 0
    while offset + NLMSGHDR.size <= len(data):
        length, kind, _flags, sequence, _pid = NLMSGHDR.unpack_from(data, offset)
        if length < NLMSGHDR.size or offset + length > len(data):
            return
        yield kind, sequence, offset + NLMSGHDR.size, offset + length
        offset += (length + 3) & ~3


def build_request(message_type: int, flags: int, sequence: int, family: int, attributes: bytes = b"") -> bytes:
    """Build one ctnetlink request: nlmsghdr, nfgenmsg and the given raw attributes."""
    length = NLMSGHDR.size + NFGENMSG.size + len(attributes)
    header = NLMSGHDR.pack(length, (NFNL_SUBSYS_CTNETLINK << 8) | message_type, flags, sequence, 0)
    return header + NFGENMSG.pack(family, NFNETLINK_V0, 0) + attributes


def encode_attribute(kind: int, payload: bytes, *, nested: bool = False) -> bytes:
    """Encode one nlattr with its payload, padded to 4 bytes."""
    header = NLATTR.pack(NLATTR.size + len(payload), kind | (NLA_F_NESTED if nested else 0))
    return header + payload + bytes(-len(payload) % 4)


def encode_tuple(kind: int, flow: FlowTuple) -> bytes:
    """Encode a CTA_TUPLE_ORIG or CTA_TUPLE_REPLY attribute for flow."""
    family = socket.AF_INET6 if ":" in flow.source else socket.AF_INET
    source_kind, destination_kind = (
        (CTA_IP_V6_SRC, CTA_IP_V6_DST) if family == socket.AF_INET6 else (CTA_IP_V4_SRC, CTA_IP_V4_DST)
    )
    addresses = encode_attribute(source_kind, socket.inet_pton(family, flow.source)) + encode_attribute(
        destination_kind, socket.inet_pton(family, flow.destination)
    )
    protocol = (
        encode_attribute(CTA_PROTO_NUM, bytes([flow.protocol]))
        + encode_attribute(CTA_PROTO_SRC_PORT, struct.pack("!H", flow.source_port))
        + encode_attribute(CTA_PROTO_DST_PORT, struct.pack("!H", flow.destination_port))
    )
    body = encode_attribute(CTA_TUPLE_IP, addresses, nested=True) + encode_attribute(
        CTA_TUPLE_PROTO, protocol, nested=True
    )
    return encode_attribute(kind, body, nested=True)


def build_new_request(flow: FlowTuple, timeout_seconds: int, sequence: int) -> bytes:
    """Build a request that creates an entry for flow, its reply the reverse tuple."""
    family = socket.AF_INET6 if ":" in flow.source else socket.AF_INET
    attributes = (
        encode_tuple(CTA_TUPLE_ORIG, flow)
        + encode_tuple(CTA_TUPLE_REPLY, flow.reverse())
        + encode_attribute(CTA_TIMEOUT, struct.pack("!I", timeout_seconds))
    )
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    return build_request(IPCTNL_MSG_CT_NEW, flags, sequence, family, attributes)


def build_dump_request(sequence: int) -> bytes:
    # AF_UNSPEC dumps the entries of every address family at once.
    return build_request(IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, sequence, socket.AF_UNSPEC)


def build_delete_request(entry: ConntrackEntry, sequence: int) -> bytes:
    return build_request(IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, sequence, entry.family, entry.delete_key)


class ConntrackSocket:
    """A ctnetlink socket in the network namespace of the thread that creates it."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
            # Error acknowledgements then leave out the request they acknowledge.
            self._socket.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
            self._socket.settimeout(SOCKET_TIMEOUT_SECONDS)
            self._socket.bind((0, 0))
        except BaseException:
            self._socket.close()
            raise
        self._sequence = 0
        self._buffer = bytearray(RECEIVE_BUFFER_BYTES)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._socket.close()

    def dump(self) -> list[ConntrackEntry]:
        """Return every conntrack entry of the namespace, of both address families."""
        sequence = self._next_sequence()
        self._socket.send(build_dump_request(sequence))
        entries: list[ConntrackEntry] = []
        while True:
            data = self._receive()
            for kind, message_sequence, start, end in iter_messages(data):
                if message_sequence != sequence:
                    continue
                if kind == NLMSG_DONE:
                    return entries
                if kind == NLMSG_ERROR:
                    error = -NLMSGERR_ERROR.unpack_from(data, start)[0]
                    if error:
                        raise ConntrackNetlinkError("dump", error)
                    continue
                entries.append(parse_entry(data, start, end))

    def delete(self, entries: Iterable[ConntrackEntry]) -> int:
        """Delete entries and return how many the kernel deleted.

        An entry that is gone already (ENOENT: its flow ended between the dump and the
        delete) is not counted. Any other error is raised after the batch it is in.
        """
        return self.send_acknowledged("delete", [build_delete_request(entry, 0) for entry in entries])

    def create(self, flows: Iterable[FlowTuple], timeout_seconds: int) -> int:
        """Create an entry for each flow and return how many the kernel created."""
        return self.send_acknowledged("create", [build_new_request(flow, timeout_seconds, 0) for flow in flows])

    def send_acknowledged(self, request: str, messages: list[bytes]) -> int:
        """Send requests that ask for an acknowledgement, many per send; return how many succeeded.

        Each message gets its own sequence number here. ENOENT counts as no success and
        no failure. Any other error is raised after the send it is in.
        """
        done = 0
        for index in range(0, len(messages), REQUESTS_PER_SEND):
            done += self._send_batch(request, messages[index : index + REQUESTS_PER_SEND])
        return done

    def _send_batch(self, request: str, batch: list[bytes]) -> int:
        first = self._sequence + 1
        numbered = b"".join(
            message[:8] + struct.pack("=I", self._next_sequence()) + message[12:] for message in batch
        )
        self._socket.send(numbered)
        waiting = {(first + offset) & 0xFFFFFFFF for offset in range(len(batch))}
        succeeded = 0
        failure = 0
        while waiting:
            data = self._receive()
            for kind, sequence, start, _end in iter_messages(data):
                if kind != NLMSG_ERROR or sequence not in waiting:
                    continue
                waiting.discard(sequence)
                error = -NLMSGERR_ERROR.unpack_from(data, start)[0]
                if error == 0:
                    succeeded += 1
                elif error != errno.ENOENT:
                    failure = error
        if failure:
            raise ConntrackNetlinkError(request, failure)
        return succeeded

    def _receive(self) -> bytes:
        size = self._socket.recv_into(self._buffer)
        return bytes(self._buffer[:size])

    def _next_sequence(self) -> int:
        self._sequence = (self._sequence + 1) & 0xFFFFFFFF
        return self._sequence
