"""Incremental parser of the head of an HTTP/1.x request: method, target, Host and path.

Feed it the bytes a client sends first. Each call returns NeedMore, ParsedRequest or
Malformed. NeedMore and Malformed are the result types of clienthello.py, so the gateway
handles both protocols alike. The head is parsed once its blank line has arrived, and a
head larger than MAX_HEAD_LENGTH is Malformed. Input that cannot start an HTTP/1
request fails at its first bytes.

Wherever a lenient reading could let the gateway and the server see different hosts,
the parser is as strict as RFC 9112 requires a server to be. It rejects two Host
fields, a field name followed by whitespace, obsolete line folding and user info in the
target.
Lines may end in CRLF or in a bare LF, as most servers accept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .clienthello import Malformed, NeedMore, ParseResult

MAX_HEAD_LENGTH = 16 * 1024
# Reason of the Malformed result for input that cannot start an HTTP/1 request.
NOT_HTTP = "not an HTTP/1 request"

_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_METHOD_PREFIX = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}( |$)")
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([^ \x00-\x1f\x7f]+) HTTP/1\.([01])")
_FIELD_LINE = re.compile(rb"(" + _TOKEN + rb"):[ \t]*(.*?)[ \t]*")
_PORT = re.compile(r"[0-9]*")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True)
class HttpRequest:
    """The parts of a request head the gateway judges.

    host is the host part of the Host field (port removed, case kept) or None when the
    request has none. target_host is the host of an absolute-form or authority-form
    target, None for origin-form and "*". path is the target's path without query or
    fragment, None for authority-form and "*".
    """

    method: str
    target: str
    version: str
    host: str | None
    target_host: str | None
    path: str | None


@dataclass(frozen=True)
class ParsedRequest:
    """A complete request head; consumed is its length including the blank line."""

    request: HttpRequest
    consumed: int


class HttpHeadParser:
    """Collect and parse one request head from pieces of input.

    After a ParsedRequest or Malformed result the parser keeps returning that result.
    """

    def __init__(self) -> None:
        self._input = bytearray()
        self._searched = 0  # bytes already searched for the end of the head
        self._result: ParsedRequest | Malformed | None = None

    def feed(self, data: bytes) -> ParseResult | ParsedRequest:
        if self._result is not None:
            return self._result
        self._input += data
        end = _head_end(self._input, max(0, self._searched - 3))
        if end is None:
            self._searched = len(self._input)
            if len(self._input) > MAX_HEAD_LENGTH:
                return self._finish(Malformed(f"request head exceeds {MAX_HEAD_LENGTH} bytes"))
            first_line = bytes(self._input.split(b"\n", 1)[0])
            if not _METHOD_PREFIX.match(first_line[:33]):
                return self._finish(Malformed(NOT_HTTP))
            return NeedMore()
        if end > MAX_HEAD_LENGTH:
            return self._finish(Malformed(f"request head exceeds {MAX_HEAD_LENGTH} bytes"))
        try:
            request = parse_request_head(bytes(self._input[:end]))
        except HeadError as error:
            return self._finish(Malformed(str(error)))
        return self._finish(ParsedRequest(request, end))

    def _finish(self, result: ParsedRequest | Malformed) -> ParsedRequest | Malformed:
        self._result = result
        self._input = bytearray()
        return result


class HeadError(ValueError):
    """The request head breaks HTTP/1.1 syntax (RFC 9112) in a way the gateway rejects."""


def _head_end(data: bytearray, start: int) -> int | None:
    """Return the offset just after the blank line that ends the head, or None."""
    index = data.find(b"\n", start)
    while index != -1:
        following = index + 1
        if data[following : following + 1] == b"\n":
            return following + 1
        if data[following : following + 2] == b"\r\n":
            return following + 2
        index = data.find(b"\n", following)
    return None


def parse_request_head(head: bytes) -> HttpRequest:
    """Parse a complete request head, blank line included."""
    lines = head.split(b"\n")
    lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
    match = _REQUEST_LINE.fullmatch(lines[0])
    if match is None:
        raise HeadError("invalid HTTP/1 request line")
    method = match.group(1).decode("ascii")
    target = match.group(2).decode("ascii", errors="backslashreplace")
    version = "1." + match.group(3).decode("ascii")

    host: str | None = None
    seen_host = False
    for line in lines[1:]:
        if not line:
            break
        if line[:1] in (b" ", b"\t"):
            raise HeadError("obsolete line folding in the request head")
        field = _FIELD_LINE.fullmatch(line)
        if field is None:
            raise HeadError("invalid header field line")
        if field.group(1).lower() != b"host":
            continue
        if seen_host:
            raise HeadError("two Host header fields")
        seen_host = True
        value = field.group(2).decode("ascii", errors="backslashreplace")
        # RFC 9112 section 3.2 requires an empty Host when the target has no authority.
        host = split_authority(value) if value else None

    target_host, path = _split_target(method, target)
    return HttpRequest(method, target, version, host, target_host, path)


def split_authority(authority: str) -> str:
    """Return the host of "host", "host:port" or "[v6]:port"; raise HeadError if invalid."""
    if authority.startswith("["):
        literal, bracket, rest = authority[1:].partition("]")
        if not bracket or not literal:
            raise HeadError(f"invalid IP literal in authority {authority!r}")
        host, port = literal, rest.removeprefix(":") if rest.startswith(":") else None
        if rest and port is None:
            raise HeadError(f"invalid authority {authority!r}")
    else:
        host, colon, port_text = authority.partition(":")
        port = port_text if colon else None
    if port is not None and not _PORT.fullmatch(port):
        raise HeadError(f"invalid port in authority {authority!r}")
    if not host:
        raise HeadError(f"empty host in authority {authority!r}")
    return host


def _split_target(method: str, target: str) -> tuple[str | None, str | None]:
    """Return (target host, path) of a request target (RFC 9112 section 3.2)."""
    if target.startswith("/"):
        return None, _path_of(target)
    if target == "*":
        return None, None
    scheme = _SCHEME.match(target)
    if scheme is not None:
        if scheme.group(1).lower() not in ("http", "https"):
            raise HeadError(f"unsupported scheme {scheme.group(1)!r} in the request target")
        rest = target[scheme.end() :]
        cut = min((rest.find(c) for c in "/?#" if c in rest), default=len(rest))
        authority, remainder = rest[:cut], rest[cut:]
        if "@" in authority:
            raise HeadError("user info in the request target")
        return split_authority(authority), _path_of(remainder) or "/"
    if method == "CONNECT":
        return split_authority(target), None
    raise HeadError(f"invalid request target {target[:64]!r}")


def _path_of(target: str) -> str:
    # The query is left out: it often carries tokens, and audit records keep paths.
    for separator in "?#":
        target = target.split(separator, 1)[0]
    return target
