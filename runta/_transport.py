"""HTTP over runtad's unix socket: socket lookup, one request, response decoding.

The sync and async transports share everything but the httpx client they drive.
"""

from __future__ import annotations

import errno
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

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
BASE_URL = "http://runtad/v1"
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


@dataclass(frozen=True)
class ApiRequest:
    """One API call: method, path below /v1, query parameters, JSON body and headers."""

    method: str
    path: str
    params: Mapping[str, str | int] | None = None
    body: Any = None
    headers: Mapping[str, str] | None = None


def build_timeout(seconds: float) -> httpx.Timeout:
    return httpx.Timeout(seconds, connect=min(seconds, CONNECT_TIMEOUT_SECONDS))


def find_os_error(exc: BaseException) -> OSError | None:
    """Return the OSError under an httpx transport error, following causes and contexts."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def close_unconnected_sockets(exc: BaseException) -> None:
    """Close unix sockets left open by a failed connect in the frames of ``exc``'s chain.

    httpcore 1.0.9's sync backend does not close its socket when connect() fails. The
    socket would stay open until the exception is collected and then emit a
    ResourceWarning. Only sockets without a peer are closed, so a pooled connection is
    never touched.
    """
    # NOTE: remove once httpcore's SyncBackend.connect_unix_socket closes the socket on
    # failure, as its anyio backend already does.
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        trace = current.__traceback__
        while trace is not None:
            for value in list(trace.tb_frame.f_locals.values()):
                if isinstance(value, socket.socket) and is_unconnected(value):
                    value.close()
            trace = trace.tb_next
        current = current.__cause__ or current.__context__


def is_unconnected(sock: socket.socket) -> bool:
    """Return whether ``sock`` is an open unix socket without a peer."""
    if sock.fileno() == -1 or sock.family != socket.AF_UNIX:
        return False
    try:
        sock.getpeername()
    except OSError:
        return True
    return False


def unavailable_error(
    socket_path: str, exc: httpx.TransportError, timeout_seconds: float
) -> DaemonUnavailableError:
    """Translate an httpx transport failure into an error that names the socket and the fix."""
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
        return DaemonTimeoutError(
            f"runtad on {socket_path} sent no response within {timeout_seconds:g} s. "
            "A write may still take effect: check the runtime's state before retrying, "
            "or pass a longer timeout.",
            socket_path=socket_path,
        )

    os_error = find_os_error(exc)
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
        reason = str(os_error or exc) or type(exc).__name__
    return DaemonUnavailableError(
        f"cannot reach runtad on {socket_path}: {reason}. {HOW_TO_POINT_AT_RUNTAD}",
        socket_path=socket_path,
    )


def decode_response(response: httpx.Response, request: ApiRequest) -> Any:
    """Return the decoded JSON of a success response (None for 204) or raise its error."""
    if response.status_code == 204:
        return None

    try:
        body = response.json()
    except ValueError:
        body = None
        if response.is_success:
            raise UnexpectedResponseError(
                f"runtad returned HTTP {response.status_code} with a body that is not JSON: "
                f"{response.text[:200]!r}",
                status=response.status_code,
            ) from None

    if response.is_success:
        return body
    if body is None:
        body = response.text[:200]
    raise attach_rejected_host(error_from_json(response.status_code, body), request)


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


def request_headers(request: ApiRequest) -> dict[str, str]:
    headers = {"User-Agent": f"runta-python/{__version__}", "Accept": "application/json"}
    headers.update(request.headers or {})
    return headers


class SyncTransport:
    """Blocking transport over one httpx client bound to the socket."""

    def __init__(self, socket_path: str, timeout_seconds: float) -> None:
        self.socket_path = socket_path
        self.timeout_seconds = timeout_seconds
        self._client = httpx.Client(
            transport=httpx.HTTPTransport(uds=socket_path),
            base_url=BASE_URL,
            timeout=build_timeout(timeout_seconds),
        )

    def send(self, request: ApiRequest) -> Any:
        try:
            response = self._client.request(
                request.method,
                request.path,
                params=request.params,
                json=request.body,
                headers=request_headers(request),
            )
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            close_unconnected_sockets(exc)
            raise unavailable_error(self.socket_path, exc, self.timeout_seconds) from exc
        except httpx.TransportError as exc:
            raise unavailable_error(self.socket_path, exc, self.timeout_seconds) from exc
        return decode_response(response, request)

    def close(self) -> None:
        self._client.close()


class AsyncTransport:
    """Asyncio transport over one httpx async client bound to the socket."""

    def __init__(self, socket_path: str, timeout_seconds: float) -> None:
        self.socket_path = socket_path
        self.timeout_seconds = timeout_seconds
        self._client = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=socket_path),
            base_url=BASE_URL,
            timeout=build_timeout(timeout_seconds),
        )

    async def send(self, request: ApiRequest) -> Any:
        try:
            response = await self._client.request(
                request.method,
                request.path,
                params=request.params,
                json=request.body,
                headers=request_headers(request),
            )
        except httpx.TransportError as exc:
            raise unavailable_error(self.socket_path, exc, self.timeout_seconds) from exc
        return decode_response(response, request)

    async def aclose(self) -> None:
        await self._client.aclose()

