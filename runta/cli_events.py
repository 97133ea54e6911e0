"""``runta egress events`` and ``runta audits list``: listing and following audit records."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable

from runta.cli_output import (
    AUDIT_HEADERS,
    EVENT_HEADERS,
    audit_fields,
    event_fields,
    event_line,
    render_table,
)
from runta.client import Runta
from runta.models import EgressEvent, Page

# Looked up at call time so that tests can replace it.
sleep = time.sleep

# Pages fetched back to back in one poll before sleeping again, so that a burst of
# events cannot keep the watcher from ever sleeping.
MAX_PAGES_PER_POLL = 20

EventSource = Callable[[str | None, str | None], Page[EgressEvent]]


def open_event_source(client: Runta, sandbox: str | None, limit: int | None) -> EventSource:
    """Return a function fetching one page of events by ``after`` cursor and ``order``."""
    if sandbox is not None:
        egress = client.runtimes.egress(sandbox)

        def fetch_runtime_events(after: str | None, order: str | None) -> Page[EgressEvent]:
            page = egress.audit(limit, after=after, order=order)
            return Page(items=tuple(with_runtime(e, sandbox) for e in page), next=page.next)

        return fetch_runtime_events

    # NOTE: the API has no cross-runtime events route, so events of all sandboxes come
    # from /v1/audits?category=egress, whose payload is taken to be the event document.
    def fetch_all_events(after: str | None, order: str | None) -> Page[EgressEvent]:
        audits = client.audits.list(category="egress", limit=limit, after=after, order=order)
        events = tuple(
            with_runtime(EgressEvent.from_json(audit.payload), audit.runtime) for audit in audits
        )
        return Page(items=events, next=audits.next)

    return fetch_all_events


def with_runtime(event: EgressEvent, runtime: str | None) -> EgressEvent:
    if event.runtime is not None or runtime is None:
        return event
    return dataclasses.replace(event, runtime=runtime)


def print_events(events: list[EgressEvent], as_json: bool, with_header: bool) -> None:
    """Print events as JSON lines, as a table, or as one line each."""
    if as_json:
        for event in events:
            print(json.dumps(event.to_json()), flush=True)
    elif with_header:
        print(render_table(EVENT_HEADERS, [event_fields(e) for e in events]), flush=True)
    else:
        for event in events:
            print(event_line(event), flush=True)


def list_events(source: EventSource, as_json: bool) -> None:
    """Print the latest page of events, oldest first."""
    page = source(None, None)
    print_events(list(reversed(page.items)), as_json, with_header=True)


def watch_events(
    source: EventSource,
    limit: int | None,
    as_json: bool,
    interval_seconds: float,
) -> None:
    """Print events oldest first, then each new one once, polling until interrupted.

    KeyboardInterrupt ends the loop and propagates to the caller.
    """
    # NOTE: the first poll starts at the oldest retained event, because the API offers
    # no cursor for "now". With a long retention the first screen is long.
    cursor: str | None = None
    while True:
        for _ in range(MAX_PAGES_PER_POLL):
            page = source(cursor, "asc")
            print_events(list(page.items), as_json, with_header=False)
            if page.next is not None:
                cursor = page.next
            if limit is None or len(page) < limit:
                break
        sleep(interval_seconds)


def list_audits(
    client: Runta, runtime: str | None, category: str | None, limit: int | None, as_json: bool
) -> None:
    """Print one page of audit records: the API's document with --json, else a table."""
    page = client.audits.list(runtime=runtime, category=category, limit=limit)
    if as_json:
        document = {"items": [audit.to_json() for audit in page], "next": page.next}
        print(json.dumps(document, indent=2))
        return
    print(render_table(AUDIT_HEADERS, [audit_fields(audit) for audit in reversed(page.items)]))
