"""Incremental parser of a TLS ClientHello: the SNI host name and whether ECH is offered.

Feed it the bytes a client sends first, in whatever pieces they arrive. Each call
returns NeedMore, Parsed or Malformed. RFC 8446 section 5.1 lets a handshake message
span several records, with no record of another content type in between, so the parser
reassembles the message first. ClientHellos of several KB, such as those that carry
post-quantum key shares, then parse the same as small ones.

The work per call is linear in the bytes fed, and the input it buffers is bounded by
MAX_INPUT_LENGTH; larger input is Malformed. Nothing here raises on bad input.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# TLS constants from RFC 8446 section 4 and RFC 6066 section 3.
CONTENT_TYPE_HANDSHAKE = 22
HANDSHAKE_CLIENT_HELLO = 1
EXTENSION_SERVER_NAME = 0x0000
SERVER_NAME_TYPE_HOST_NAME = 0
# encrypted_client_hello, draft-ietf-tls-esni-18 section 5.
EXTENSION_ENCRYPTED_CLIENT_HELLO = 0xFE0D

RECORD_HEADER_LENGTH = 5
HANDSHAKE_HEADER_LENGTH = 4
# A TLSPlaintext fragment is at most 2^14 bytes (RFC 8446 section 5.1).
MAX_RECORD_LENGTH = 1 << 14
# The largest ClientHello body accepted: 16 KiB, four times what a hybrid ML-KEM key share
# (1216 bytes in X25519MLKEM768) and the usual extensions add up to.
MAX_HANDSHAKE_LENGTH = 1 << 14
# Record headers allowed on top of the message, so a client that splits its ClientHello
# into up to 64 records still fits.
MAX_RECORDS = 64
MAX_INPUT_LENGTH = MAX_HANDSHAKE_LENGTH + HANDSHAKE_HEADER_LENGTH + MAX_RECORDS * RECORD_HEADER_LENGTH


@dataclass(frozen=True)
class NeedMore:
    """Input that is a valid prefix of a ClientHello: feed more bytes."""


@dataclass(frozen=True)
class Malformed:
    """Input that is not a ClientHello the gateway accepts, with the reason."""

    reason: str


@dataclass(frozen=True)
class ClientHello:
    """The fields of a ClientHello that the gateway judges.

    server_name is the host_name of the server_name extension as sent (ASCII bytes
    decoded with backslash escapes for anything else), or None when the extension is
    absent. has_ech is True when the encrypted_client_hello extension is present, and
    then server_name is the outer, public name.
    """

    server_name: str | None
    has_ech: bool
    legacy_version: int
    alpn: tuple[str, ...]


@dataclass(frozen=True)
class Parsed:
    """A complete ClientHello; consumed is how many input bytes it took, records included."""

    hello: ClientHello
    consumed: int


ParseResult = NeedMore | Malformed | Parsed

NEED_MORE = NeedMore()


class ClientHelloParser:
    """Reassemble and parse one ClientHello from pieces of input.

    After a Parsed or Malformed result the parser keeps returning that same result.
    """

    def __init__(self) -> None:
        self._input = bytearray()
        self._record_offset = 0  # start of the next record header in _input
        self._handshake = bytearray()  # reassembled handshake-record payloads
        self._result: Parsed | Malformed | None = None

    def feed(self, data: bytes) -> ParseResult:
        if self._result is not None:
            return self._result
        if len(self._input) + len(data) > MAX_INPUT_LENGTH:
            return self._finish(Malformed(f"first flight exceeds {MAX_INPUT_LENGTH} bytes"))
        self._input += data
        problem = self._take_records()
        if problem is not None:
            return self._finish(Malformed(problem))
        return self._check_message()

    def _finish(self, result: Parsed | Malformed) -> Parsed | Malformed:
        self._result = result
        self._input = bytearray()
        self._handshake = bytearray()
        return result

    def _take_records(self) -> str | None:
        """Move every complete record's payload to _handshake; return a problem or None."""
        while len(self._input) - self._record_offset >= RECORD_HEADER_LENGTH:
            start = self._record_offset
            content_type, major, minor, length = struct.unpack_from("!BBBH", self._input, start)
            if content_type != CONTENT_TYPE_HANDSHAKE:
                if start == 0:
                    return f"not a TLS handshake record (content type {content_type})"
                return f"content type {content_type} before the ClientHello was complete"
            if major != 3:
                return f"unknown TLS record version {major}.{minor}"
            if length == 0 or length > MAX_RECORD_LENGTH:
                return f"invalid handshake record length {length}"
            end = start + RECORD_HEADER_LENGTH + length
            if end > len(self._input):
                # The payload is incomplete. Checking a message header that has arrived
                # already lets a wrong type or a huge length fail without waiting.
                if len(self._handshake) < HANDSHAKE_HEADER_LENGTH:
                    payload = start + RECORD_HEADER_LENGTH
                    head = self._input[payload : payload + HANDSHAKE_HEADER_LENGTH]
                    return _check_header(self._handshake + head)
                return None
            self._handshake += self._input[start + RECORD_HEADER_LENGTH : end]
            self._record_offset = end
            problem = _check_header(self._handshake)
            if problem is not None:
                return problem
            announced = _announced_length(self._handshake)
            if announced is not None and len(self._handshake) >= HANDSHAKE_HEADER_LENGTH + announced:
                return None
        if self._record_offset == 0 and self._input and self._input[0] != CONTENT_TYPE_HANDSHAKE:
            return f"not a TLS handshake record (content type {self._input[0]})"
        return None

    def _check_message(self) -> ParseResult:
        if len(self._handshake) < HANDSHAKE_HEADER_LENGTH:
            return NEED_MORE
        announced = _announced_length(self._handshake)
        assert announced is not None  # checked in _take_records
        end = HANDSHAKE_HEADER_LENGTH + announced
        if len(self._handshake) < end:
            return NEED_MORE
        if len(self._handshake) > end:
            # The record that completed the ClientHello carries more handshake bytes,
            # which a client never sends before the server's reply.
            return self._finish(Malformed("handshake bytes follow the ClientHello in its record"))
        try:
            hello = parse_client_hello_body(bytes(self._handshake[HANDSHAKE_HEADER_LENGTH:end]))
        except _BodyError as error:
            return self._finish(Malformed(str(error)))
        return self._finish(Parsed(hello, self._record_offset))


def parse_client_hello(data: bytes) -> ParseResult:
    """Parse a ClientHello given whole (or the first part of one)."""
    return ClientHelloParser().feed(data)


def _check_header(handshake: bytearray) -> str | None:
    """Return the problem with the handshake message header, if enough of it is here."""
    if not handshake:
        return None
    if handshake[0] != HANDSHAKE_CLIENT_HELLO:
        return f"first handshake message is type {handshake[0]}, not ClientHello"
    announced = _announced_length(handshake)
    if announced is not None and announced > MAX_HANDSHAKE_LENGTH:
        return f"ClientHello of {announced} bytes exceeds {MAX_HANDSHAKE_LENGTH}"
    return None


def _announced_length(handshake: bytearray) -> int | None:
    if len(handshake) < HANDSHAKE_HEADER_LENGTH or handshake[0] != HANDSHAKE_CLIENT_HELLO:
        return None
    length: int = int.from_bytes(handshake[1:4], "big")
    return length


class _BodyError(Exception):
    """The ClientHello body does not follow RFC 8446 section 4.1.2."""


class _Reader:
    """Bounds-checked reads from a byte string; every overrun raises _BodyError."""

    def __init__(self, data: bytes, part: str) -> None:
        self.data = data
        self.offset = 0
        self.part = part

    def take(self, count: int) -> bytes:
        end = self.offset + count
        if end > len(self.data):
            raise _BodyError(f"{self.part} is truncated")
        piece = self.data[self.offset : end]
        self.offset = end
        return piece

    def number(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def vector(self, length_size: int) -> bytes:
        return self.take(self.number(length_size))

    def at_end(self) -> bool:
        return self.offset == len(self.data)


def parse_client_hello_body(body: bytes) -> ClientHello:
    """Parse the body of a ClientHello handshake message (after its 4-byte header)."""
    reader = _Reader(body, "ClientHello")
    legacy_version = reader.number(2)
    reader.take(32)  # random
    reader.vector(1)  # legacy_session_id
    cipher_suites = reader.vector(2)
    if not cipher_suites or len(cipher_suites) % 2:
        raise _BodyError(f"invalid cipher_suites length {len(cipher_suites)}")
    if not reader.vector(1):
        raise _BodyError("empty legacy_compression_methods")
    if reader.at_end():
        # A ClientHello without extensions (SSL 3.0 style) names no server.
        return ClientHello(None, False, legacy_version, ())
    extensions = _Reader(reader.vector(2), "extensions")
    if not reader.at_end():
        raise _BodyError("bytes follow the extensions")

    seen: set[int] = set()
    server_name: str | None = None
    alpn: tuple[str, ...] = ()
    while not extensions.at_end():
        kind = extensions.number(2)
        data = extensions.vector(2)
        if kind in seen:
            # RFC 8446 section 4.2: at most one extension of each type.
            raise _BodyError(f"extension {kind:#06x} appears twice")
        seen.add(kind)
        if kind == EXTENSION_SERVER_NAME:
            server_name = _parse_server_name(data)
        elif kind == 0x0010:  # application_layer_protocol_negotiation, RFC 7301
            alpn = _parse_alpn(data)
    return ClientHello(server_name, EXTENSION_ENCRYPTED_CLIENT_HELLO in seen, legacy_version, alpn)


def _parse_server_name(data: bytes) -> str:
    outer = _Reader(data, "server_name extension")
    names = _Reader(outer.vector(2), "server_name list")
    if not outer.at_end():
        raise _BodyError("bytes follow the server_name list")
    host_name: bytes | None = None
    while not names.at_end():
        name_type = names.number(1)
        name = names.vector(2)
        if name_type != SERVER_NAME_TYPE_HOST_NAME:
            continue  # RFC 6066 defines no other type; unknown ones carry no host
        if host_name is not None:
            # RFC 6066 section 3: one name per type. Two would let the gateway and the
            # server read different hosts.
            raise _BodyError("server_name lists two host names")
        host_name = name
    if not host_name:
        raise _BodyError("server_name has no host name")
    return host_name.decode("ascii", errors="backslashreplace")


def _parse_alpn(data: bytes) -> tuple[str, ...]:
    outer = _Reader(data, "ALPN extension")
    protocols = _Reader(outer.vector(2), "ALPN protocol list")
    found = []
    while not protocols.at_end():
        found.append(protocols.vector(1).decode("ascii", errors="backslashreplace"))
    return tuple(found)
