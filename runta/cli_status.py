"""``runta status``: runtad's version, uptime, sandboxes, last reconcile and dropped events."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

from runta import _endpoints as endpoints
from runta.client import Runta

DROPPED_LABELS = {"audit": "audit", "kernel_log": "kernel log", "dns_queries": "DNS queries"}


def show_status(client: Runta, args: argparse.Namespace) -> int:
    # The SDK's Status model carries the fields every runtad version sends; this command
    # shows the newer ones too, so it reads the whole document.
    document = client._transport.send(endpoints.get_status())
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        print("\n".join(status_lines(document, client.socket_path)))
    return 0


def status_lines(document: Mapping[str, Any], socket_path: str) -> list[str]:
    """Return the status document as aligned "name: value" lines."""
    rows = [
        ("uptime", format_duration(document.get("uptime_seconds"))),
        ("sandboxes", format_sandboxes(document)),
        ("last reconcile", document.get("last_reconcile") or "-"),
        ("last reload", format_reload(document.get("last_config_reload"))),
        ("dropped events", format_dropped(document.get("dropped_events"))),
        ("upstream DNS", ", ".join(document.get("upstream_dns") or []) or "-"),
    ]
    width = max(len(name) for name, _ in rows) + 1
    lines = [f"runtad {document.get('version', '?')} on {socket_path}"]
    lines.extend(f"{name + ':':<{width}} {value}" for name, value in rows)
    return lines


def format_duration(seconds: object) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h {minutes} min"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def format_sandboxes(document: Mapping[str, Any]) -> str:
    count = document.get("runtimes")
    if count is None:
        return "-"
    enforcing = document.get("enforcing")
    return f"{count}" if enforcing is None else f"{count} ({enforcing} enforcing)"


def format_reload(reload: object) -> str:
    if not isinstance(reload, Mapping):
        return "none since start"
    text = f"{reload.get('at', '?')} {reload.get('result', '?')}"
    if reload.get("error"):
        text += f": {reload['error']}"
    if reload.get("needs_restart"):
        text += "; restart to apply " + ", ".join(reload["needs_restart"])
    return text


def format_dropped(dropped: object) -> str:
    if not isinstance(dropped, Mapping):
        return "- (this runtad does not count them)"
    return ", ".join(f"{DROPPED_LABELS.get(key, key)} {value}" for key, value in dropped.items())
