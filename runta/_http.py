"""Parts of the HTTP exchange with runtad that both transports share.

They are socket lookup, request headers, response decoding and error mapping.
runta._transport sends requests with httpx (the SDK) and runta._stdlib_transport with
http.client (the CLI). This module imports neither, so that the CLI never loads httpx.
"""

from __future__ import annotations

import codecs
import errno
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from runta._version import __version__
from runta.errors import (
    DaemonTimeoutError,
    DaemonUnavailableError,
    InvalidHostError,
    RuntaError,
    UnexpectedResponseError,
    error_from_json,
)

DEFAULT_SOCKET = "/run/runta/runtad.sock"
SOCKET_ENV = "RUNTA_SOCKET"
HOST = "runtad"
API_PREFIX = "/v1"
BASE_URL = f"http://{HOST}{API_PREFIX}"
# Policy writes return only after runtad has resolved the exact hosts and the kernel
# contains the new sets, which can take seconds with many hosts or a slow upstream resolver.
DEFAULT_TIMEOUT_SECONDS = 30.0
CONNECT_TIMEOUT_SECONDS = 5.0

HOW_TO_POINT_AT_RUNTAD = (
    "Start runtad (systemctl start runtad), or pass --socket PATH or set RUNTA_SOCKET "
    "to the socket it listens on."
)


def resolve_socket_path(socket: str | os.PathLike[str] | None = None) -> str:
    """Return the socket path: the argument, else $RUNTA_SOCKET, else the default."""
    if socket is not None:
        return os.fspath(socket)
    from_env = os.environ.get(SOCKET_ENV)
    if from_env:
        return from_env
    return DEFAULT_SOCKET


def connect_timeout(timeout_seconds: float) -> float:
    """Return the connect timeout for a request timeout, both in seconds."""
    return min(timeout_seconds, CONNECT_TIMEOUT_SECONDS)


@dataclass(frozen=True)
class ApiRequest:
    """One API call: method, path below /v1, query parameters, JSON body and headers."""

    method: str
    path: str
    params: Mapping[str, str | int] | None = None
    body: Any = None
    headers: Mapping[str, str] | None = None


@dataclass(frozen=True)
class ApiResponse:
    """A response as received: status, undecoded body and the charset to read it as text."""

    status: int
    content: bytes
    charset: str = "utf-8"

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300

    def text(self) -> str:
        """Decode the body, replacing bytes the charset cannot decode."""
        return self.content.decode(self.charset, errors="replace")


class Transport(Protocol):
    """Interface of the transport that the blocking client sends requests through."""

    def send(self, request: ApiRequest) -> Any: ...

    def close(self) -> None: ...


class AwaitableTransport(Protocol):
    """Interface of the transport that the asyncio client sends requests through."""

    async def send(self, request: ApiRequest) -> Any: ...

    async def aclose(self) -> None: ...


def known_charset(charset: str | None) -> str:
    """Return ``charset`` if Python has a codec for it, else UTF-8, as httpx does."""
    if charset is None:
        return "utf-8"
    try:
        codecs.lookup(charset)
    except LookupError:
        return "utf-8"
    return charset


def request_headers(request: ApiRequest) -> dict[str, str]:
    headers = {"User-Agent": f"runta-python/{__version__}", "Accept": "application/json"}
    headers.update(request.headers or {})
    return headers


def decode_response(response: ApiResponse, request: ApiRequest) -> Any:
    """Return the decoded JSON of a success response (None for 204) or raise its error."""
    if response.status == 204:
        return None

    try:
        body = json.loads(response.content)
    except ValueError:
        body = None
        if response.is_success:
            raise UnexpectedResponseError(
                f"runtad returned HTTP {response.status} with a body that is not JSON: "
                f"{response.text()[:200]!r}",
                status=response.status,
            ) from None

    if response.is_success:
        return body
    if body is None:
        body = response.text()[:200]
    raise attach_rejected_host(error_from_json(response.status, body), request)


FIELD_INDEX = re.compile(r"([a-z_]+)\[([0-9]+)\]")


def attach_rejected_host(error: RuntaError, request: ApiRequest) -> RuntaError:
    """Set ``host`` of a server-side InvalidHostError to the entry its ``field`` names."""
    if not isinstance(error, InvalidHostError) or error.field is None:
        return error
    match = FIELD_INDEX.fullmatch(error.field)
    if match is None or not isinstance(request.body, dict):
        return error
    entries = request.body.get(match[1])
    index = int(match[2])
    if isinstance(entries, list) and index < len(entries):
        error.host = str(entries[index])
    return error


def timeout_error(socket_path: str, timeout_seconds: float) -> DaemonTimeoutError:
    """Return the error for a connected request that got no response in time."""
    return DaemonTimeoutError(
        f"runtad on {socket_path} sent no response within {timeout_seconds:g} s. "
        "A write may still take effect: check the runtime's state before retrying, "
        "or pass a longer timeout.",
        socket_path=socket_path,
    )


def unreachable_error(
    socket_path: str, os_error: OSError | None, detail: str
) -> DaemonUnavailableError:
    """Return the error for a failed connection, naming the socket and the fix.

    ``os_error`` is the OSError behind the failure, if any, and ``detail`` the text to
    show when its errno has no message of its own.
    """
    error_number = os_error.errno if os_error is not None else None
    if error_number in (errno.EACCES, errno.EPERM):
        return DaemonUnavailableError(
            f"permission denied on the runtad socket {socket_path}: join the 'runta' group "
            "(usermod -aG runta USER, then log in again) or run as root.",
            socket_path=socket_path,
        )
    if error_number == errno.ENOENT:
        reason = "the socket does not exist"
    elif error_number == errno.ECONNREFUSED:
        reason = "connection refused, no daemon is listening"
    else:
        reason = detail
    return DaemonUnavailableError(
        f"cannot reach runtad on {socket_path}: {reason}. {HOW_TO_POINT_AT_RUNTAD}",
        socket_path=socket_path,
    )
