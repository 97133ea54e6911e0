"""The CLI's blocking transport: HTTP/1.1 over runtad's unix socket with http.client.

Importing httpx took about two thirds of the CLI's import time (python -X importtime),
so the CLI sends its requests with the standard library instead. It sends the SDK
transport's request line, headers and JSON body, keeps its timeouts, and maps failures
to the same errors through runta._http. Two headers differ: it sends
``Accept-Encoding: identity`` because it decodes no compressed body, and it leaves out
``Connection: keep-alive``, which HTTP/1.1 implies.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
from typing import Any
from urllib.parse import urlencode

from runta._http import (
    API_PREFIX,
    HOST,
    ApiRequest,
    ApiResponse,
    connect_timeout,
    decode_response,
    known_charset,
    request_headers,
    timeout_error,
    unreachable_error,
)

# httpx 0.29's wording for a connection closed before the response or in its body, so
# that both transports print the same message.
DISCONNECTED_DETAIL = "Server disconnected without sending a response."
INCOMPLETE_BODY_DETAIL = "peer closed connection without sending complete message body"


class UnixSocketConnection(http.client.HTTPConnection):
    """An HTTP connection to a unix socket path, with a connect timeout of its own."""

    def __init__(self, socket_path: str, timeout_seconds: float) -> None:
        super().__init__(HOST, timeout=timeout_seconds)
        self.socket_path = socket_path
        self.timeout_seconds = timeout_seconds

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(connect_timeout(self.timeout_seconds))
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        sock.settimeout(self.timeout_seconds)
        self.sock = sock


def is_readable(sock: socket.socket) -> bool:
    """Return whether an idle connection has data or end of file waiting.

    Either means the connection cannot carry another request: runtad closed it, or sent
    bytes no request asked for. httpcore 1.0 checks pooled connections the same way.
    """
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def request_target(request: ApiRequest) -> str:
    """Return the path and query of the request line, as httpx builds them."""
    target = API_PREFIX + request.path
    if request.params:
        target += "?" + urlencode(request.params)
    return target


def encode_body(request: ApiRequest) -> bytes | None:
    """Encode the JSON body with httpx's settings: UTF-8, no spaces, no NaN."""
    if request.body is None:
        return None
    text = json.dumps(request.body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8")


class StdlibTransport:
    """Blocking transport over one keep-alive connection to the socket."""

    def __init__(self, socket_path: str, timeout_seconds: float) -> None:
        self.socket_path = socket_path
        self.timeout_seconds = timeout_seconds
        self._connection = UnixSocketConnection(socket_path, timeout_seconds)

    def send(self, request: ApiRequest) -> Any:
        body = encode_body(request)
        headers = request_headers(request)
        if body is not None:
            headers["Content-Type"] = "application/json"

        self._open_connection()
        try:
            self._connection.request(
                request.method, request_target(request), body=body, headers=headers
            )
            response = self._connection.getresponse()
            content = response.read()
        except TimeoutError as exc:
            self._connection.close()
            raise timeout_error(self.socket_path, self.timeout_seconds) from exc
        except http.client.RemoteDisconnected as exc:
            self._connection.close()
            raise unreachable_error(self.socket_path, exc, DISCONNECTED_DETAIL) from exc
        except http.client.IncompleteRead as exc:
            self._connection.close()
            raise unreachable_error(self.socket_path, None, incomplete_detail(exc)) from exc
        except (OSError, http.client.HTTPException) as exc:
            self._connection.close()
            os_error = exc if isinstance(exc, OSError) else None
            raise unreachable_error(self.socket_path, os_error, describe(exc)) from exc

        charset = known_charset(response.headers.get_content_charset())
        return decode_response(ApiResponse(response.status, content, charset), request)

    def _open_connection(self) -> None:
        """Connect unless the kept-alive connection is still usable."""
        sock = self._connection.sock
        if sock is not None and is_readable(sock):
            self._connection.close()
        if self._connection.sock is not None:
            return
        try:
            self._connection.connect()
        except OSError as exc:
            raise unreachable_error(self.socket_path, exc, describe(exc)) from exc

    def close(self) -> None:
        self._connection.close()


def describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def incomplete_detail(exc: http.client.IncompleteRead) -> str:
    """Describe a body cut short in httpx's words, with the byte counts when known."""
    if exc.expected is None:
        return f"{INCOMPLETE_BODY_DETAIL} (incomplete chunked read)"
    received = len(exc.partial)
    return (
        f"{INCOMPLETE_BODY_DETAIL} (received {received} bytes, expected {received + exc.expected})"
    )
