"""Log level changes at run time; journald priority prefixes on the journal stream."""

from __future__ import annotations

import pytest
import structlog

from runtad import logsetup


def test_drop_below_threshold_drops_debug() -> None:
    logsetup.set_log_level("info")
    with pytest.raises(structlog.DropEvent):
        logsetup._drop_below_threshold(None, "debug", {"event": "dns_query_denied"})


def test_drop_below_threshold_follows_new_level() -> None:
    logsetup.set_log_level("debug")
    try:
        event = {"event": "dns_query_denied"}
        assert logsetup._drop_below_threshold(None, "debug", event) is event
    finally:
        logsetup.set_log_level("info")


def test_drop_below_threshold_keeps_exception_at_error() -> None:
    logsetup.set_log_level("error")
    try:
        event = {"event": "request_crashed"}
        assert logsetup._drop_below_threshold(None, "exception", event) is event
    finally:
        logsetup.set_log_level("info")


@pytest.mark.parametrize(
    ("method", "prefix"), [("debug", "<7>"), ("info", "<6>"), ("warning", "<4>"), ("error", "<3>")]
)
def test_prefix_syslog_priority(method: str, prefix: str) -> None:
    assert logsetup._prefix_syslog_priority(None, method, '{"event": "x"}') == prefix + '{"event": "x"}'


def test_is_journal_stream_without_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    assert logsetup.is_journal_stream() is False
