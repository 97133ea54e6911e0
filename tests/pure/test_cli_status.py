"""``runta status`` text from runtad's status document."""

from __future__ import annotations

from runta.cli_status import format_duration, status_lines

DOCUMENT = {
    "version": "0.1.0",
    "uptime_seconds": 3725.4,
    "runtimes": 3,
    "enforcing": 2,
    "upstream_dns": ["198.51.100.53:53"],
    "last_reconcile": "2026-12-04T20:10:00.000Z",
    "last_config_reload": {
        "at": "2026-12-04T21:00:00.000Z", "result": "applied", "error": None,
        "applied": ["min_ttl"], "needs_restart": ["netns_prefix"],
    },
    "dropped_events": {"audit": 3, "kernel_log": 0, "dns_queries": 2},
}


def lines_by_name(document: dict[str, object]) -> dict[str, str]:
    rows = status_lines(document, "/run/runta/runtad.sock")[1:]
    return {name.strip(): value.strip() for name, value in (row.split(":", 1) for row in rows)}


def test_status_lines_header() -> None:
    header = status_lines(DOCUMENT, "/run/runta/runtad.sock")[0]
    assert header == "runtad 0.1.0 on /run/runta/runtad.sock"


def test_status_lines_sandboxes_and_uptime() -> None:
    lines = lines_by_name(DOCUMENT)
    assert lines["sandboxes"] == "3 (2 enforcing)"
    assert lines["uptime"] == "1 h 2 min"


def test_status_lines_last_reconcile() -> None:
    assert lines_by_name(DOCUMENT)["last reconcile"] == "2026-12-04T20:10:00.000Z"


def test_status_lines_dropped_events() -> None:
    assert lines_by_name(DOCUMENT)["dropped events"] == "audit 3, kernel log 0, DNS queries 2"


def test_status_lines_reload_needing_restart() -> None:
    value = lines_by_name(DOCUMENT)["last reload"]
    assert value == "2026-12-04T21:00:00.000Z applied; restart to apply netns_prefix"


def test_status_lines_rejected_reload() -> None:
    document = dict(DOCUMENT, last_config_reload={
        "at": "2026-12-04T21:00:00.000Z", "result": "rejected", "error": "invalid log_level 'x'",
        "applied": [], "needs_restart": [],
    })
    value = lines_by_name(document)["last reload"]
    assert value == "2026-12-04T21:00:00.000Z rejected: invalid log_level 'x'"


def test_status_lines_older_daemon() -> None:
    document = {"version": "0.1.0", "uptime_seconds": 5, "runtimes": 1, "upstream_dns": []}
    lines = lines_by_name(document)
    assert lines["sandboxes"] == "1"
    assert lines["last reconcile"] == "-"
    assert lines["last reload"] == "none since start"
    assert lines["dropped events"].startswith("-")


def test_format_duration_days() -> None:
    assert format_duration(2 * 86400 + 3 * 3600 + 4 * 60) == "2 d 3 h 4 min"
