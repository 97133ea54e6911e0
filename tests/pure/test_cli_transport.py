"""The CLI's standard-library transport against the SDK's httpx transport.

Both transports send each request to a raw unix socket server that records the bytes
and replies with a canned response, so the tests compare what goes over the socket
and the errors each transport raises.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from runta import _endpoints as endpoints
from runta._http import ApiRequest
from runta._stdlib_transport import StdlibTransport, UnixSocketConnection
from runta._transport import SyncTransport, unavailable_error
from runta.errors import (
    DaemonTimeoutError,
    DaemonUnavailableError,
    NotFoundError,
    RuntaError,
    UnexpectedResponseError,
)
from runta.models import EgressPolicy

REPO_ROOT = Path(__file__).resolve().parents[2]
TRANSPORTS: dict[str, type[SyncTransport | StdlibTransport]] = {
    "httpx": SyncTransport,
    "stdlib": StdlibTransport,
}
# Headers that only the transport's connection handling sets, not the API call.
CONNECTION_HEADERS = {"accept-encoding", "connection"}
OK_JSON = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
ACCEPT_SECONDS = 5.0


@dataclass
class RecordedRequest:
    line: str
    headers: dict[str, str]
    body: bytes


@dataclass
class RawServer:
    """A unix socket server in a thread that replies once on each connection.

    ``reply`` gets the request bytes and returns the response bytes, or None to close
    without a response. With ``keep_open`` the server keeps the connection open instead
    of closing it after the reply.
    """

    path: Path
    reply: Callable[[bytes], bytes | None]
    keep_open: bool = False
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0

    def serve(self, listener: socket.socket, stop: threading.Event) -> None:
        open_connections: list[socket.socket] = []
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.settimeout(ACCEPT_SECONDS)
            self.answer(conn)
            if self.keep_open:
                open_connections.append(conn)
            else:
                conn.close()
        for conn in open_connections:
            conn.close()

    def answer(self, conn: socket.socket) -> None:
        """Reply to one request, or with ``keep_open`` to each until the client closes."""
        while True:
            try:
                request = read_request(conn)
            except OSError:
                return
            if not request:
                return
            self.requests.append(request)
            response = self.reply(request)
            if response is None:
                return
            conn.sendall(response)
            if not self.keep_open:
                return


def read_request(conn: socket.socket) -> bytes:
    """Read one request: the head, then as many body bytes as Content-Length gives."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def parse_request(raw: bytes) -> RecordedRequest:
    head, _, body = raw.partition(b"\r\n\r\n")
    line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for header in header_lines:
        name, _, value = header.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RecordedRequest(line, headers, body)


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # A short directory under /tmp: unix socket paths are limited to 107 bytes.
    directory = tempfile.mkdtemp(prefix="runta-tr-", dir="/tmp")
    yield Path(directory)
    shutil.rmtree(directory)


@pytest.fixture
def serve(socket_dir: Path) -> Iterator[Callable[..., RawServer]]:
    """Start RawServers on fresh socket paths, and stop them all when the test ends."""
    threads: list[tuple[threading.Thread, threading.Event, socket.socket]] = []

    def start(reply: Callable[[bytes], bytes | None], keep_open: bool = False) -> RawServer:
        server = RawServer(socket_dir / f"s{len(threads)}.sock", reply, keep_open)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(server.path))
        listener.listen(8)
        stop = threading.Event()
        thread = threading.Thread(target=server.serve, args=(listener, stop), daemon=True)
        thread.start()
        threads.append((thread, stop, listener))
        return server

    yield start
    for thread, stop, listener in threads:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def send_with(name: str, path: Path, request: ApiRequest, timeout: float = 5.0) -> Any:
    transport = TRANSPORTS[name](str(path), timeout)
    try:
        return transport.send(request)
    finally:
        transport.close()


def error_from(name: str, path: Path, request: ApiRequest, timeout: float = 5.0) -> RuntaError:
    with pytest.raises(RuntaError) as caught:
        send_with(name, path, request, timeout)
    return caught.value


# What goes over the socket.

SAME_REQUESTS = {
    "status": endpoints.get_status(),
    "allow": endpoints.allow_hosts(
        "worker", ["pypi.org", "bücher.example"], force=True, if_version=3, normalize=False
    ),
    "enable": endpoints.set_enforcement("worker", True, if_version=None),
    "delete": endpoints.delete_runtime("a/b?c"),
    "put": endpoints.put_egress(
        "worker",
        EgressPolicy(enabled=True, allowed_hosts=["a.test"]),
        force=False,
        if_version=None,
        normalize=False,
    ),
    "audits": endpoints.list_audits(
        runtime="worker", category="egress tls&x=1", limit=5, after="12", order="desc"
    ),
    "events without params": endpoints.list_events("worker", limit=None, after=None, order=None),
}


@pytest.mark.parametrize("name", SAME_REQUESTS)
def test_request_bytes_match_httpx(name: str, serve: Callable[..., RawServer]) -> None:
    server = serve(lambda request: OK_JSON)
    request = SAME_REQUESTS[name]

    send_with("httpx", server.path, request)
    send_with("stdlib", server.path, request)

    sent_by_httpx, sent_by_stdlib = (parse_request(raw) for raw in server.requests)
    assert sent_by_stdlib.line == sent_by_httpx.line
    assert sent_by_stdlib.body == sent_by_httpx.body
    for header in CONNECTION_HEADERS:
        sent_by_httpx.headers.pop(header, None)
        sent_by_stdlib.headers.pop(header, None)
    assert sent_by_stdlib.headers == sent_by_httpx.headers


def test_request_asks_identity_encoding(serve: Callable[..., RawServer]) -> None:
    server = serve(lambda request: OK_JSON)

    send_with("stdlib", server.path, endpoints.get_status())

    assert parse_request(server.requests[0]).headers["accept-encoding"] == "identity"


def test_connection_kept_alive(serve: Callable[..., RawServer]) -> None:
    server = serve(lambda request: OK_JSON, keep_open=True)
    transport = StdlibTransport(str(server.path), 5.0)

    try:
        first = transport.send(endpoints.get_status())
        second = transport.send(endpoints.get_status())
    finally:
        transport.close()

    assert first == {}
    assert second == {}
    assert server.connections == 1


def test_closed_connection_reopened(serve: Callable[..., RawServer]) -> None:
    # The server closes each connection after its reply without saying so in a header,
    # as a daemon that restarts or times out an idle connection does.
    server = serve(lambda request: OK_JSON)
    transport = StdlibTransport(str(server.path), 5.0)

    try:
        transport.send(endpoints.get_status())
        second = transport.send(endpoints.get_status())
    finally:
        transport.close()

    assert second == {}
    assert server.connections == 2


# Responses and errors: both transports must raise the same class with the same message.

CONFLICT = b'{"error": {"code": "version_conflict", "message": "v is 4"}}'
RESPONSES = {
    "problem document 404": (
        b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 60\r\n\r\n"
        b'{"error": {"code": "not_found", "message": "no runtime x"}} '
    ),
    "text 502": b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 11\r\n\r\nupstream \xff!",
    "latin-1 500": (
        b"HTTP/1.1 500 Oops\r\nContent-Type: text/plain; charset=latin-1\r\n"
        b"Content-Length: 4\r\n\r\nd\xe9j\xe0"
    ),
    "unknown charset 500": (
        b"HTTP/1.1 500 Oops\r\nContent-Type: text/plain; charset=nonesuch\r\n"
        b"Content-Length: 3\r\n\r\n\xc3\xa9!"
    ),
    "200 not JSON": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    "chunked 409": (
        b"HTTP/1.1 409 Conflict\r\nTransfer-Encoding: chunked\r\n\r\n"
        + f"{len(CONFLICT):x}\r\n".encode()
        + CONFLICT
        + b"\r\n0\r\n\r\n"
    ),
    "disconnect without response": None,
    "truncated body": b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello",
    "truncated chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
}


@pytest.mark.parametrize("name", RESPONSES)
def test_response_error_matches_httpx(name: str, serve: Callable[..., RawServer]) -> None:
    server = serve(lambda request: RESPONSES[name])
    request = endpoints.get_status()

    from_httpx = error_from("httpx", server.path, request)
    from_stdlib = error_from("stdlib", server.path, request)

    assert type(from_stdlib) is type(from_httpx)
    assert str(from_stdlib) == str(from_httpx)
    assert from_stdlib.status == from_httpx.status


def test_problem_document_maps_to_class(serve: Callable[..., RawServer]) -> None:
    server = serve(lambda request: RESPONSES["problem document 404"])

    error = error_from("stdlib", server.path, endpoints.get_runtime("x"))

    assert isinstance(error, NotFoundError)
    assert error.message == "no runtime x"
    assert error.status == 404


def test_no_content_returns_none(serve: Callable[..., RawServer]) -> None:
    server = serve(lambda request: b"HTTP/1.1 204 No Content\r\n\r\n")

    assert send_with("stdlib", server.path, endpoints.delete_runtime("x")) is None


def test_not_json_success_unexpected(serve: Callable[..., RawServer]) -> None:
    server = serve(lambda request: RESPONSES["200 not JSON"])

    error = error_from("stdlib", server.path, endpoints.get_status())

    assert isinstance(error, UnexpectedResponseError)
    assert "'hello'" in error.message


def test_read_timeout_matches_httpx(serve: Callable[..., RawServer]) -> None:
    server = serve(lambda request: None, keep_open=True)
    request = endpoints.get_status()

    from_httpx = error_from("httpx", server.path, request, timeout=0.2)
    from_stdlib = error_from("stdlib", server.path, request, timeout=0.2)

    assert isinstance(from_stdlib, DaemonTimeoutError)
    assert str(from_stdlib) == str(from_httpx)
    assert "0.2 s" in from_stdlib.message


def test_missing_socket_matches_httpx(socket_dir: Path) -> None:
    path = socket_dir / "absent.sock"
    request = endpoints.get_status()

    from_httpx = error_from("httpx", path, request)
    from_stdlib = error_from("stdlib", path, request)

    assert isinstance(from_stdlib, DaemonUnavailableError)
    assert str(from_stdlib) == str(from_httpx)
    assert "the socket does not exist" in from_stdlib.message


def test_refused_socket_matches_httpx(socket_dir: Path) -> None:
    path = socket_dir / "refused.sock"
    bound = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    bound.bind(str(path))  # bound but not listening: connect() gets ECONNREFUSED
    request = endpoints.get_status()

    try:
        from_httpx = error_from("httpx", path, request)
        from_stdlib = error_from("stdlib", path, request)
    finally:
        bound.close()

    assert str(from_stdlib) == str(from_httpx)
    assert "connection refused" in from_stdlib.message


def test_permission_denied_matches_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    # Root passes every permission check, so connect() is made to fail as for a user
    # outside the socket's group.
    def connect_denied(self: UnixSocketConnection) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(UnixSocketConnection, "connect", connect_denied)
    httpx_failure = httpx.ConnectError("denied")
    httpx_failure.__cause__ = PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    from_httpx = unavailable_error("/run/runta/runtad.sock", httpx_failure, 30.0)
    from_stdlib = error_from("stdlib", Path("/run/runta/runtad.sock"), endpoints.get_status())

    assert type(from_stdlib) is type(from_httpx)
    assert str(from_stdlib) == str(from_httpx)
    assert "'runta' group" in from_stdlib.message


# The CLI's imports.


def run_python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
        env={**os.environ, "RUNTA_SOCKET": "/tmp/runta-no-such-dir/runtad.sock"},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_cli_import_skips_httpx() -> None:
    output = run_python("import sys, runta.cli; print('httpx' in sys.modules)")

    assert output == "False"


def test_cli_request_skips_httpx() -> None:
    # A request that fails to connect still runs the whole send path.
    output = run_python(
        "import sys, contextlib, io\n"
        "from runta.cli import main\n"
        "with contextlib.redirect_stderr(io.StringIO()):\n"
        "    code = main(['sandbox', 'list'])\n"
        "print(code, 'httpx' in sys.modules)"
    )

    assert output == "69 False"


def test_sdk_client_uses_httpx() -> None:
    output = run_python(
        "import sys, runta\n"
        "before = 'httpx' in sys.modules\n"
        "client = runta.Runta(); client.close()\n"
        "print(before, type(client._transport).__name__)"
    )

    assert output == "False SyncTransport"

