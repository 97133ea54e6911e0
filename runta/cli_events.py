"""``runta egress events`` and ``runta audits list``: listing and following audit records."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from runta.cli_output import AUDIT_HEADERS, audit_fields, event_line, event_table, render_table
from runta.client import Runta
from runta.errors import UnexpectedResponseError
from runta.models import EgressEvent

# Looked up at call time so that tests can replace it.
sleep = time.sleep

# Pages fetched back to back in one poll before sleeping again, so that a burst of
# events cannot keep the watcher from ever sleeping.
MAX_PAGES_PER_POLL = 20


@dataclass(frozen=True)
class EventPage:
    """One page of events with the audit id of each, which is the cursor that follows it."""

    events: tuple[EgressEvent, ...]
    ids: tuple[str | None, ...]
    next: str | None


EventSource = Callable[[str | None, str | None], EventPage]


def open_event_source(client: Runta, sandbox: str | None, limit: int | None) -> EventSource:
    """Return a function fetching one page of events by ``after`` cursor and ``order``."""
    if sandbox is not None:
        egress = client.runtimes.egress(sandbox)

        def fetch_runtime_events(after: str | None, order: str | None) -> EventPage:
            page = egress.audit(limit, after=after, order=order)
            return EventPage(
                events=tuple(with_runtime(event, sandbox) for event in page),
                ids=tuple(None if event.id is None else str(event.id) for event in page),
                next=page.next,
            )

        return fetch_runtime_events

    # NOTE: the API has no cross-runtime events route, so events of all sandboxes come
    # from /v1/audits?category=egress, whose payload is taken to be the event document.
    def fetch_all_events(after: str | None, order: str | None) -> EventPage:
        audits = client.audits.list(category="egress", limit=limit, after=after, order=order)
        return EventPage(
            events=tuple(
                with_runtime(EgressEvent.from_json(audit.payload), audit.runtime)
                for audit in audits
            ),
            ids=tuple(str(audit.id) for audit in audits),
            next=audits.next,
        )

    return fetch_all_events


def with_runtime(event: EgressEvent, runtime: str | None) -> EgressEvent:
    if event.runtime is not None or runtime is None:
        return event
    return dataclasses.replace(event, runtime=runtime)


def print_events(events: list[EgressEvent], as_json: bool, with_header: bool) -> None:
    """Print events as JSON lines, as a table, or one after another without a header.

    In text each event's message goes on an indented line under the event.
    """
    if as_json:
        for event in events:
            print(json.dumps(event.to_json()), flush=True)
    elif with_header:
        print(event_table(events), flush=True)
    else:
        for event in events:
            print(event_line(event), flush=True)


def list_events(source: EventSource, as_json: bool) -> None:
    """Print the latest page of events, oldest first."""
    page = source(None, None)
    print_events(list(reversed(page.events)), as_json, with_header=True)


def newest_cursor(page: EventPage) -> str | None:
    """Return the cursor after the newest event of a newest-first page, None for no events."""
    if not page.events:
        return None
    cursor = page.ids[0]
    if cursor is None:
        raise UnexpectedResponseError(
            "runtad returned an event without an id, so --watch cannot tell which events "
            f"are new: {page.events[0].to_json()!r:.300}. Use a runtad that sends event ids."
        )
    return cursor


def watch_events(
    source: EventSource,
    limit: int | None,
    as_json: bool,
    interval_seconds: float,
) -> None:
    """Print the newest page of events, then each new one once, polling until interrupted.

    Like ``tail -f``: the first page holds the ``limit`` newest events (the API's default
    page size without ``limit``), oldest first. KeyboardInterrupt ends the loop and
    propagates to the caller.
    """
    first = source(None, "desc")
    print_events(list(reversed(first.events)), as_json, with_header=True)
    # With no event yet, following from the start misses nothing and repeats nothing.
    cursor = newest_cursor(first)
    while True:
        sleep(interval_seconds)
        for _ in range(MAX_PAGES_PER_POLL):
            page = source(cursor, "asc")
            print_events(list(page.events), as_json, with_header=False)
            if page.next is not None:
                cursor = page.next
            if not page.events or (limit is not None and len(page.events) < limit):
                break


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
