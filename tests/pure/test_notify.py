"""sd_notify messages reach a datagram socket named by $NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtad.notify import notify, reloading_fields, tell_systemd


@pytest.fixture
def receiver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    try:
        yield sock
    finally:
        sock.close()


def test_notify_sends_ready(receiver: socket.socket) -> None:
    assert notify("READY=1") is True
    assert receiver.recv(4096) == b"READY=1"


def test_notify_joins_fields_with_newlines(receiver: socket.socket) -> None:
    notify("READY=1", "STATUS=serving 2 sandboxes")
    assert receiver.recv(4096) == b"READY=1\nSTATUS=serving 2 sandboxes"


def test_notify_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"runta-notify-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert notify("STOPPING=1") is True
        assert sock.recv(4096) == b"STOPPING=1"


def test_notify_without_socket_sends_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False


def test_notify_missing_socket_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "absent.sock"))
    with pytest.raises(OSError):
        notify("READY=1")


def test_tell_systemd_missing_socket_logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from structlog.testing import capture_logs

    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "absent.sock"))
    with capture_logs() as events:
        tell_systemd("READY=1")
    assert [event["event"] for event in events] == ["systemd_notify_failed"]
    assert events[0]["fields"] == ["READY=1"]


def test_reloading_fields_carry_monotonic_time() -> None:
    reloading, monotonic = reloading_fields()
    assert reloading == "RELOADING=1"
    key, _, value = monotonic.partition("=")
    assert key == "MONOTONIC_USEC"
    assert int(value) > 0
