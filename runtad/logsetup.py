"""structlog set-up: JSON lines when stdout is not a terminal, readable lines when it is.

Under systemd, stdout is a journal stream: each JSON line then starts with the
sd-daemon(3) priority prefix "<N>", which journald strips and stores as the entry's
PRIORITY, so `journalctl -p warning` filters by level and `journalctl -o cat` still
prints plain JSON. The level threshold can change at run time (set_log_level).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog

LEVEL_BY_METHOD = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "msg": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}
# Syslog priorities from sd-daemon(3): 7 debug, 6 info, 4 warning, 3 error, 2 critical.
SYSLOG_PRIORITY = {
    logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2,
}

_threshold = logging.INFO


def configure_logging(level: str = "info") -> None:
    set_log_level(level)
    processors: list[structlog.typing.Processor] = [
        _drop_below_threshold,
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    renderers: list[structlog.typing.Processor]
    if sys.stdout.isatty():
        renderers = [structlog.dev.ConsoleRenderer()]
    elif is_journal_stream():
        renderers = [structlog.processors.JSONRenderer(), _prefix_syslog_priority]
    else:
        renderers = [structlog.processors.JSONRenderer()]
    structlog.configure(
        processors=[*processors, *renderers],
        # Every level passes the bound logger, so that set_log_level applies to loggers
        # that were cached before it was called; _drop_below_threshold filters instead.
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )


def set_log_level(level: str) -> None:
    """Set the lowest level that is logged: debug, info, warning or error."""
    global _threshold
    _threshold = logging.getLevelNamesMapping()[level.upper()]


def is_journal_stream() -> bool:
    """Tell whether stdout is the journal stream that $JOURNAL_STREAM names."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    try:
        status = os.fstat(sys.stdout.fileno())
    except (OSError, ValueError):
        return False
    return expected == f"{status.st_dev}:{status.st_ino}"


def _drop_below_threshold(
    logger: object, method_name: str, event_dict: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    if LEVEL_BY_METHOD.get(method_name, logging.INFO) < _threshold:
        raise structlog.DropEvent
    return event_dict


def _prefix_syslog_priority(logger: object, method_name: str, rendered: Any) -> str:
    # Runs after JSONRenderer, so it receives the rendered line, not the event dict.
    priority = SYSLOG_PRIORITY[LEVEL_BY_METHOD.get(method_name, logging.INFO)]
    return f"<{priority}>{rendered}"
