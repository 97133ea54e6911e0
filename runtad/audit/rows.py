"""The stored form of an event: its audits row, with the payload JSON built once.

The writer builds one InsertRow per event. The same payload text goes into SQLite and
into the event's egress_audit log line, so an event is serialized once.
"""

from __future__ import annotations

from json.encoder import encode_basestring_ascii
from typing import NamedTuple

from .model import EgressEvent, format_time

# The keys of EgressEvent.to_payload() in its order. payload_text() must produce what
# json.dumps(event.to_payload()) produces, and a test compares the two.
_PAYLOAD = (
    '{"time": %s, "runtime": %s, "action": %s, "host": %s, "address": %s, "port": %s,'
    ' "protocol": %s, "path": %s, "reason": %s, "message": %s, "source": %s, "count": %s}'
)


class InsertRow(NamedTuple):
    """The values of one audits row, in the column order of INSERT_COLUMNS."""

    time: str
    runtime: str
    category: str
    payload: str

    @classmethod
    def from_event(cls, event: EgressEvent) -> InsertRow:
        time = format_time(event.time)
        return cls(time, event.runtime, event.category, payload_text(event, time))


INSERT_COLUMNS = "(time, runtime, category, payload)"


def payload_text(event: EgressEvent, time: str | None = None) -> str:
    """Return json.dumps(event.to_payload()), built without the intermediate dict.

    time is format_time(event.time) when the caller has it already.
    """
    return _PAYLOAD % (
        _json_string(format_time(event.time) if time is None else time),
        _json_string(event.runtime),
        _json_string(event.action),
        _json_string(event.host),
        _json_string(event.address),
        _json_number(event.port),
        _json_string(event.protocol),
        _json_string(event.path),
        _json_string(event.reason),
        _json_string(event.message),
        _json_string(event.source),
        _json_number(event.count),
    )


def _json_string(value: str | None) -> str:
    # The C escaper behind json.dumps with ensure_ascii=True, the default.
    return "null" if value is None else encode_basestring_ascii(value)


def _json_number(value: int | None) -> str:
    # json.dumps writes every int, subclasses included, with int.__repr__.
    return "null" if value is None else int.__repr__(value)
