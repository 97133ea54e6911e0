"""The nftables ruleset generation ID of one network namespace, read over raw netlink.

The kernel increments the generation ID with every committed nftables transaction in a
namespace, whoever sent it. If the ID still has the value it got from runtad's own last
transaction, no other writer has changed any table, set or element there since. Expiry by
timeout is not a transaction and leaves the ID as it is.

One request and reply take a few microseconds, far less than a libnftables
transaction, so the set writer can afford one per batch.
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path

from .netns import call_in_netns

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_GETGEN = 16
NFT_MSG_NEWGEN = 15
NFTA_GEN_ID = 1
NLM_F_REQUEST = 0x1
NLMSG_ERROR = 2
NLMSG_HEADER = struct.Struct("=IHHII")
NFGEN_HEADER = struct.Struct("=BBH")
ATTRIBUTE_HEADER = struct.Struct("=HH")
RECEIVE_BUFFER = 8192
# Seconds to wait for the kernel's reply, which comes at once unless the kernel is stuck.
REPLY_TIMEOUT = 0.5


class GenerationReadError(Exception):
    """The kernel did not return the nftables generation ID."""

    def __init__(self, netns: str, detail: str) -> None:
        super().__init__(
            f"reading the nftables generation ID in {netns} failed: {detail};"
            " the set writer writes every element until a read succeeds"
        )
        self.netns = netns
        self.detail = detail


class GenerationReader:
    """A netlink socket inside one namespace that reads its nftables generation ID."""

    def __init__(self, netns_label: str, sock: socket.socket) -> None:
        self.netns_label = netns_label
        self._socket = sock
        self._sequence = 0

    @classmethod
    def open(cls, netns_path: Path | None) -> GenerationReader:
        """Open a reader in the namespace at netns_path (None: the daemon's own)."""
        if netns_path is None:
            return cls("host", _open_socket())
        return cls(str(netns_path), call_in_netns(netns_path, _open_socket))

    def read(self) -> int:
        """Return the current generation ID, or raise GenerationReadError when the read fails."""
        self._sequence = (self._sequence + 1) & 0xFFFFFFFF
        message_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN
        body = NFGEN_HEADER.pack(socket.AF_UNSPEC, 0, 0)
        length = NLMSG_HEADER.size + len(body)
        request = NLMSG_HEADER.pack(length, message_type, NLM_F_REQUEST, self._sequence, 0)
        try:
            self._socket.send(request + body)
            while True:
                reply = self._socket.recv(RECEIVE_BUFFER)
                generation = self._parse(reply)
                if generation is not None:
                    return generation
        except OSError as error:
            raise GenerationReadError(self.netns_label, f"{type(error).__name__} {error}") from error

    def _parse(self, reply: bytes) -> int | None:
        """Return the ID in a reply to the last request, or None for a stale reply."""
        if len(reply) < NLMSG_HEADER.size:
            raise GenerationReadError(self.netns_label, "short netlink reply")
        length, message_type, _, sequence, _ = NLMSG_HEADER.unpack_from(reply)
        if sequence != self._sequence:
            return None  # the reply to an earlier request that timed out
        if message_type == NLMSG_ERROR:
            code = struct.unpack_from("=i", reply, NLMSG_HEADER.size)[0]
            raise GenerationReadError(self.netns_label, f"netlink error {-code}")
        if message_type != (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN:
            raise GenerationReadError(self.netns_label, f"unexpected netlink message type {message_type}")
        offset = NLMSG_HEADER.size + NFGEN_HEADER.size
        end = min(length, len(reply))
        while offset + ATTRIBUTE_HEADER.size <= end:
            attribute_length, attribute_type = ATTRIBUTE_HEADER.unpack_from(reply, offset)
            if attribute_length < ATTRIBUTE_HEADER.size:
                break
            if attribute_type & 0x3FFF == NFTA_GEN_ID and attribute_length >= 8:
                return struct.unpack_from("!I", reply, offset + ATTRIBUTE_HEADER.size)[0]
            offset += (attribute_length + 3) & ~3
        raise GenerationReadError(self.netns_label, "reply without a generation ID attribute")

    def close(self) -> None:
        self._socket.close()


def _open_socket() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_NETFILTER)
    try:
        sock.bind((0, 0))
        sock.settimeout(REPLY_TIMEOUT)
    except BaseException:
        sock.close()
        raise
    return sock
