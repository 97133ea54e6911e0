"""The lab-side handle on the test DNS server: edit its zone, read its query log."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.lab.dns_zone import RecordValue, ZoneDocument
from tests.lab.files import write_atomically


class LabDns:
    """Changes the zone file the server reads. Each change applies from the next query on.

    Values use zone-file presentation format, for example ``"192.0.2.10"`` for A,
    ``"edge.cdn.test."`` for CNAME and ``'"v=1 hello"'`` for TXT.
    """

    def __init__(self, zone_path: Path, query_log_path: Path, address: str, address_v6: str):
        self.zone_path = zone_path
        self.query_log_path = query_log_path
        self.address = address
        self.address_v6 = address_v6
        self.document = ZoneDocument()
        self.query_log_path.touch()
        self._write()

    def _write(self) -> None:
        write_atomically(self.zone_path, self.document.to_json())

    def set_records(
        self, name: str, rtype: str, values: Sequence[RecordValue], ttl: int = 300
    ) -> None:
        """Replace the ``rtype`` records of ``name``. A value may be a (text, ttl) pair."""
        self.document.set_records(name, rtype, values, ttl)
        self._write()

    def set_rotation(
        self,
        name: str,
        pool: Sequence[str],
        per_answer: int,
        ttl: int = 30,
        rtype: str | None = None,
    ) -> None:
        """Rotate ``name`` through ``pool``: each query gets the next ``per_answer`` addresses."""
        self.document.set_rotation(name, pool, per_answer, ttl, rtype)
        self._write()

    def set_mode(self, name: str, mode: str, delay_ms: int = 0) -> None:
        """Handle queries for ``name`` (and, for a wildcard, names below it) in ``mode``.

        ``mode`` is ``answer``, ``servfail``, ``drop`` (no reply at all) or ``refused``;
        ``delay_ms`` delays the reply, or the silence, by that many milliseconds.
        """
        self.document.set_mode(name, mode, delay_ms)
        self._write()

    def set_global_mode(self, mode: str, delay_ms: int = 0) -> None:
        """Handle queries for every name without a mode of its own in ``mode``."""
        self.document.set_global_mode(mode, delay_ms)
        self._write()

    def set_negative_ttl(self, ttl: int) -> None:
        """Set the TTL of the SOA sent with NXDOMAIN and NODATA responses."""
        self.document.data["negative_ttl"] = int(ttl)
        self._write()

    def remove(self, name: str) -> None:
        """Remove ``name`` from the zone, so queries for it get NXDOMAIN from the next one on."""
        self.document.remove(name)
        self._write()

    def queries(self) -> list[dict[str, Any]]:
        """Return every logged query, oldest first.

        Each is a dict with ``time`` (Unix seconds), ``client``, ``client_port``,
        ``server``, ``qname`` (as sent, with the trailing dot), ``qtype`` and
        ``transport`` (``udp`` or ``tcp``).
        """
        with open(self.query_log_path, encoding="utf-8") as log_file:
            return [json.loads(line) for line in log_file if line.endswith("\n")]

    def clear_queries(self) -> None:
        """Empty the query log. The server appends, so later queries start at the top."""
        os.truncate(self.query_log_path, 0)
