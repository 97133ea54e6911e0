"""egress_audit log lines: rendered once per batch, the same fields as one by one."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from runtad import logsetup
from runtad.audit.loglines import log_audit_lines
from runtad.audit.rows import InsertRow
from tests.pure.audit_helpers import make_event


def make_rows(hosts: list[str]) -> list[InsertRow]:
    return [InsertRow.from_event(make_event(host, port=index)) for index, host in enumerate(hosts)]


def configure(stream: io.StringIO, *renderers: Any) -> None:
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *renderers,
        ],
        logger_factory=structlog.PrintLoggerFactory(stream),
    )


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    yield io.StringIO()
    structlog.reset_defaults()


def test_loglines_match_event_fields(stream: io.StringIO) -> None:
    configure(stream, structlog.processors.JSONRenderer())
    rows = make_rows(["a.test", 'quote".test', "ünicode.test"])
    log_audit_lines([4, 5, 6], rows)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 3
    for event_id, row, line in zip([4, 5, 6], rows, lines):
        timestamp = line.pop("timestamp")
        assert timestamp.endswith("Z")
        expected = {
            "id": event_id,
            **json.loads(row.payload),
            "event": "egress_audit",
            "level": "info",
        }
        assert line == expected


def test_loglines_keep_rendered_prefix(stream: io.StringIO) -> None:
    def prefix(logger: object, method_name: str, rendered: Any) -> str:
        return f"<6>{rendered}"

    configure(stream, structlog.processors.JSONRenderer(), prefix)
    log_audit_lines([1, 2], make_rows(["a.test", "b.test"]))
    lines = stream.getvalue().splitlines()
    assert all(line.startswith("<6>{") for line in lines)
    assert [json.loads(line[3:])["id"] for line in lines] == [1, 2]


def test_loglines_other_renderer_one_by_one(stream: io.StringIO) -> None:
    configure(stream, structlog.processors.KeyValueRenderer(key_order=["event", "id"]))
    log_audit_lines([1, 2], make_rows(["a.test", "b.test"]))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("event='egress_audit' id=1 ")
    assert "host='b.test'" in lines[1]


def test_loglines_level_filter_drops_all(capsys: pytest.CaptureFixture[str]) -> None:
    logsetup.configure_logging("warning")
    try:
        log_audit_lines([1, 2], make_rows(["a.test", "b.test"]))
    finally:
        logsetup.set_log_level("info")
        structlog.reset_defaults()
    assert capsys.readouterr().out == ""


def test_loglines_daemon_config_json(capsys: pytest.CaptureFixture[str]) -> None:
    logsetup.configure_logging("info")
    try:
        log_audit_lines([9], make_rows(["a.test"]))
    finally:
        structlog.reset_defaults()
    line = json.loads(capsys.readouterr().out)
    assert line["id"] == 9
    assert line["host"] == "a.test"
    assert line["level"] == "info"
