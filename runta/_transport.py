"""The SDK's transports: HTTP over runtad's unix socket with httpx.

The sync and async transports share everything but the httpx client they drive. Socket
lookup, headers, response decoding and error messages come from runta._http, which the
CLI's transport (runta._stdlib_transport) shares too.
"""

from __future__ import annotations

import socket
from typing import Any

import httpx

from runta._http import (
    BASE_URL,
    ApiRequest,
    ApiResponse,
    connect_timeout,
    decode_response,
    known_charset,
    request_headers,
    timeout_error,
    unreachable_error,
)
from runta.errors import DaemonUnavailableError


def build_timeout(seconds: float) -> httpx.Timeout:
    return httpx.Timeout(seconds, connect=connect_timeout(seconds))


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
        return timeout_error(socket_path, timeout_seconds)
    os_error = find_os_error(exc)
    detail = str(os_error or exc) or type(exc).__name__
    return unreachable_error(socket_path, os_error, detail)


def read_response(response: httpx.Response) -> ApiResponse:
    return ApiResponse(response.status_code, response.content, known_charset(response.encoding))


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
        return decode_response(read_response(response), request)

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
        return decode_response(read_response(response), request)

    async def aclose(self) -> None:
        await self._client.aclose()
