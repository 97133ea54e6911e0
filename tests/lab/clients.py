"""Real clients (dig, curl) run inside a namespace with a clean environment, and their output parsed."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.lab.processes import client_env
from tests.lab.topology import Lab

_STATUS = re.compile(r"->>HEADER<<- opcode: \w+, status: (\w+)")
_FLAGS = re.compile(r"^;; flags: ([a-z ]*);", re.MULTILINE)
_SECTION = re.compile(r"^;; (\w+) SECTION:$")
_HTTP_CODE_MARK = "\n--lab-http-code--"


@dataclass(frozen=True)
class DnsRecord:
    owner: str
    ttl: int
    rtype: str
    value: str


@dataclass
class DigResult:
    """The parts of dig's default output that tests check. ``status`` is None on timeout."""

    status: str | None
    flags: set[str] = field(default_factory=set)
    answer: list[DnsRecord] = field(default_factory=list)
    authority: list[DnsRecord] = field(default_factory=list)
    output: str = ""

    def values(self, rtype: str) -> list[str]:
        return [record.value for record in self.answer if record.rtype == rtype]


def parse_dig(output: str) -> DigResult:
    """Parse dig's default output (the last reply in it, should dig have retried)."""
    status_matches = _STATUS.findall(output)
    flag_matches = _FLAGS.findall(output)
    result = DigResult(
        status=status_matches[-1] if status_matches else None,
        flags=set(flag_matches[-1].split()) if flag_matches else set(),
        output=output,
    )
    section: list[DnsRecord] | None = None
    for line in output.splitlines():
        header = _SECTION.match(line)
        if header:
            section = {"ANSWER": result.answer, "AUTHORITY": result.authority}.get(header[1])
            if section is not None:
                section.clear()
            continue
        if not line.strip() or line.startswith(";"):
            section = None if not line.strip() else section
            continue
        if section is not None:
            owner, ttl, _rdclass, rtype, value = line.split(None, 4)
            section.append(DnsRecord(owner, int(ttl), rtype, value.strip()))
    return result


def run_dig(
    lab: Lab, netns: str, name: str, rtype: str = "A", *options: str, server: str | None = None
) -> DigResult:
    """Query ``server`` (the lab's DNS server by default) with dig from ``netns``.

    Sends one try with a 2 s timeout unless ``options`` override them.
    """
    argv = ["dig", f"@{server or lab.dns_address}", name, rtype, "+time=2", "+tries=1", *options]
    completed = lab.exec_in(netns, argv, env=client_env(), timeout=30)
    return parse_dig(completed.stdout + completed.stderr)


@dataclass
class CurlResult:
    returncode: int
    http_code: int
    body: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.body)


def run_curl(
    lab: Lab, netns: str, url: str, *options: str, ca_cert: Path | None = None
) -> CurlResult:
    """Fetch ``url`` with curl from ``netns``, trusting the lab CA (or ``ca_cert``) only.

    ``http_code`` is 0 when no response arrived. A 10 s bound applies unless
    ``options`` carry their own ``--max-time``.
    """
    argv = [
        "curl", "-sS", "--max-time", "10",
        "--cacert", str(ca_cert or lab.ca_cert_path),
        "-w", _HTTP_CODE_MARK.replace("\n", r"\n") + "%{http_code}",
        *options, url,
    ]  # fmt: skip
    completed = lab.exec_in(netns, argv, env=client_env(), timeout=700)
    body, _, code = completed.stdout.rpartition(_HTTP_CODE_MARK)
    return CurlResult(
        returncode=completed.returncode,
        http_code=int(code) if code.isdigit() else 0,
        body=body,
        stderr=completed.stderr,
    )
