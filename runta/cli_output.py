"""Human-readable output of the runta CLI: summaries, tables and warnings.

Pure functions from SDK models to text, so the formats are tested without a daemon.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

from runta.models import Audit, Egress, EgressEvent, RuntimeInfo


def utc_now() -> datetime:
    return datetime.now(UTC)


def on_off(enabled: bool) -> str:
    return "on" if enabled else "off"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Render rows under headers in columns two spaces apart, without padding the last."""
    widths = [len(h) for h in headers]
    for row in rows:
        for column, cell in enumerate(row):
            widths[column] = max(widths[column], len(cell))

    lines = []
    for row in [tuple(headers), *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]))
    return "\n".join(lines)


def format_remaining(expires_at: datetime, now: datetime) -> str:
    """Format the time left until ``expires_at`` as ``4m59s``, ``1h02m03s`` or ``expired``."""
    seconds = int((expires_at - now).total_seconds())
    if seconds <= 0:
        return "expired"
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{seconds:02d}s"
    if minutes:
        return f"{minutes}m{seconds:02d}s"
    return f"{seconds}s"


def format_expiry(expires_at: datetime | None, now: datetime) -> str:
    if expires_at is None:
        return "-"
    utc_text = expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{format_remaining(expires_at, now)} ({utc_text})"


def policy_state(egress: Egress) -> str:
    hosts = plural(len(egress.allowed_hosts), "allowed host")
    return f"enforcement {on_off(egress.enabled)}, {hosts} (version {egress.version})"


def egress_summary(runtime: str, egress: Egress) -> str:
    """Return the one-line result of an egress write, e.g. ``worker: enforcement on, ...``."""
    return f"{runtime}: {policy_state(egress)}"


def inspect_summary(runtime: str, egress: Egress) -> str:
    """Return the result of ``egress inspect``, e.g. ``worker: inspect all, enforcement on, ...``."""
    return f"{runtime}: inspect {egress.inspect}, {policy_state(egress)}"


def inspect_warning(runtime: str, egress: Egress) -> str | None:
    """Return a warning when strict inspection is set but enforcement is off, else None."""
    if egress.inspect != "all" or egress.enabled:
        return None
    return (
        f"{runtime}: enforcement is off, so the gateway inspects no connection until you run "
        f"'runta egress enable {runtime}'"
    )


EGRESS_HEADERS = ("HOST", "KIND", "STATUS", "ADDRESS", "SOURCE", "EXPIRES")


def egress_rows(egress: Egress, now: datetime) -> list[tuple[str, ...]]:
    """Return one row per address, and one ``-`` row for an entry without addresses."""
    rows: list[tuple[str, ...]] = []
    for entry in egress.entries:
        if not entry.addresses:
            rows.append((entry.host, entry.kind, entry.status, "-", "-", "-"))
        for address in entry.addresses:
            expires = format_expiry(address.expires_at, now)
            source = address.source or "-"
            rows.append((entry.host, entry.kind, entry.status, address.address, source, expires))
    return rows


def egress_table(egress: Egress, now: datetime) -> str:
    header = (
        f"enforcement: {on_off(egress.enabled)}  inspect: {egress.inspect}  "
        f"version: {egress.version}"
    )
    if not egress.entries:
        return header + "\nno allowed hosts"
    return header + "\n" + render_table(EGRESS_HEADERS, egress_rows(egress, now))


def unresolved_warning(runtime: str, egress: Egress) -> str | None:
    """Return a warning naming the exact hosts that have no addresses, or None."""
    unresolved = [e.host for e in egress.entries if e.status == "unresolved"]
    if not unresolved:
        return None
    return (
        f"{runtime}: {plural(len(unresolved), 'allowed host')} without addresses "
        f"(unresolved): {', '.join(unresolved)}. runtad retries the lookup with back-off; "
        "check the spelling if a host stays unresolved."
    )


RUNTIME_HEADERS = ("NAME", "NETNS", "ADOPTED", "ENFORCEMENT", "ADDRESSES")


def runtime_rows(runtimes: Sequence[RuntimeInfo]) -> list[tuple[str, ...]]:
    return [
        (
            r.name,
            r.netns,
            "yes" if r.adopted else "no",
            on_off(r.egress_state.enabled) if r.egress_state is not None else f"failed: {r.error}",
            ",".join(r.addresses) or "-",
        )
        for r in runtimes
    ]


def runtime_summary(runtime: RuntimeInfo) -> str:
    """Return the one-line result of ``sandbox create``."""
    action = "adopted" if runtime.adopted else "created"
    addresses = ", ".join(runtime.addresses) or "none managed by runtad"
    return f"{runtime.name}: {action} netns {runtime.netns}, addresses {addresses}"


EVENT_HEADERS = ("TIME", "SANDBOX", "ACTION", "HOST", "DESTINATION", "REASON", "PATH", "COUNT")
# An event's message goes on its own line under the event's row, indented by this.
MESSAGE_INDENT = "    "


def printable(text: str) -> str:
    """Escape control and other non-printable characters, such as ``\\n`` or ``\\x1b``.

    Host names, paths and messages can carry bytes that a process in the sandbox chose,
    so they are escaped before they reach a terminal.
    """
    if text.isprintable():
        return text
    return "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        for char in text
    )


def format_destination(event: EgressEvent) -> str:
    if event.address is None:
        return "-"
    address = f"[{event.address}]" if ":" in event.address else event.address
    destination = address if event.port is None else f"{address}:{event.port}"
    return destination if event.protocol is None else f"{destination}/{event.protocol}"


def event_fields(event: EgressEvent) -> tuple[str, ...]:
    time = event.time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if event.time else "-"
    fields = (
        time,
        event.runtime or "-",
        event.action,
        event.host or "-",
        format_destination(event),
        event.reason or "-",
        event.path or "-",
        str(event.count),
    )
    return tuple(printable(field) for field in fields)


def message_lines(event: EgressEvent) -> list[str]:
    """Return the event's message as one indented line, or no line when it has none."""
    if not event.message:
        return []
    return [MESSAGE_INDENT + printable(event.message)]


def event_line(event: EgressEvent) -> str:
    """Return one event as its fields on one line and its message on the next."""
    return "\n".join(["  ".join(event_fields(event)), *message_lines(event)])


def event_table(events: Sequence[EgressEvent]) -> str:
    """Render events under EVENT_HEADERS, each row followed by its message line."""
    table = render_table(EVENT_HEADERS, [event_fields(event) for event in events])
    header, *rows = table.split("\n")
    lines = [header]
    for event, row in zip(events, rows, strict=True):
        lines.append(row)
        lines.extend(message_lines(event))
    return "\n".join(lines)


AUDIT_HEADERS = ("TIME", "SANDBOX", "CATEGORY", "ID", "PAYLOAD")


def audit_fields(audit: Audit) -> tuple[str, ...]:
    time = audit.time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if audit.time else "-"
    payload = json.dumps(dict(audit.payload), separators=(",", ":"), sort_keys=True)
    return (time, audit.runtime or "-", audit.category, str(audit.id), payload)
