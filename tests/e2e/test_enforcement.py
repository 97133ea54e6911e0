"""Enforcement seen from inside a sandbox, with real clients (curl, dig, python)."""

from __future__ import annotations

import time

import pytest

from tests.e2e.runtad_process import RuntadProcess, SandboxHandle

pytestmark = pytest.mark.root

# A denied connection must end with a reset or ICMP error at once, never by timeout.
FAST_FAILURE_SECONDS = 1.0


def enforced(runtad: RuntadProcess, hosts: list[str]) -> SandboxHandle:
    sandbox = runtad.create_sandbox()
    assert sandbox.post("allow", hosts).status_code == 200
    assert sandbox.post("enable").status_code == 200
    return sandbox


def test_allowed_exact_host_over_ipv4(runtad: RuntadProcess) -> None:
    sandbox = enforced(runtad, ["pypi.org"])
    result = sandbox.curl("https://pypi.org/", "-4")
    assert result.stdout == "200", result.stderr


def test_allowed_exact_host_over_ipv6(runtad: RuntadProcess) -> None:
    sandbox = enforced(runtad, ["pypi.org"])
    result = sandbox.curl("https://pypi.org/", "-6")
    assert result.stdout == "200", result.stderr


def test_wildcard_one_level(runtad: RuntadProcess) -> None:
    sandbox = enforced(runtad, ["*.pythonhosted.org"])
    assert sandbox.curl("https://files.pythonhosted.org/").stdout == "200"


def test_wildcard_three_levels(runtad: RuntadProcess) -> None:
    sandbox = enforced(runtad, ["*.pythonhosted.org"])
    assert sandbox.curl("https://a.b.c.pythonhosted.org/").stdout == "200"


def test_wildcard_apex_denied(runtad: RuntadProcess) -> None:
    sandbox = enforced(runtad, ["*.pythonhosted.org"])
    answer = sandbox.dig("pythonhosted.org", "A")
    assert "status: NXDOMAIN" in answer.stdout
    started = time.monotonic()
    result = sandbox.curl("https://pythonhosted.org/")
    assert result.returncode == 6  # curl: could not resolve host
    assert time.monotonic() - started < FAST_FAILURE_SECONDS


@pytest.mark.parametrize(
    "name",
    ["evilpythonhosted.org", "pythonhosted.org.evil.test", "notpypi.org", "pypi.org.evil.test"],
)
def test_look_alike_denied(runtad: RuntadProcess, name: str) -> None:
    sandbox = enforced(runtad, ["pypi.org", "*.pythonhosted.org"])
    assert "status: NXDOMAIN" in sandbox.dig(name, "A").stdout
    assert sandbox.curl(f"https://{name}/").returncode == 6


def test_ip_literal_not_in_sets_denied_fast(runtad: RuntadProcess) -> None:
    sandbox = enforced(runtad, ["pypi.org"])
    started = time.monotonic()
    result = sandbox.curl("http://198.51.100.7/")
    elapsed = time.monotonic() - started
    assert result.returncode == 56, result.stderr  # curl: recv failure, reset by the gateway
    assert elapsed < FAST_FAILURE_SECONDS


def test_ipv6_literal_not_in_sets_denied_fast(runtad: RuntadProcess) -> None:
    sandbox = enforced(runtad, ["pypi.org"])
    started = time.monotonic()
    result = sandbox.curl("http://[2001:db8::7]/")
    assert result.returncode == 56, result.stderr
    assert time.monotonic() - started < FAST_FAILURE_SECONDS


def test_udp_and_ping_to_unlisted_address_denied(runtad: RuntadProcess) -> None:
    sandbox = enforced(runtad, [])
    code = (
        "import socket\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "s.connect(('198.51.100.7', 9999))\n"
        "try:\n"
        "    s.send(b'x')\n"
        "    s.settimeout(2)\n"
        "    s.recv(10)\n"
        "    print('open')\n"
        "except OSError as error:\n"
        "    print('denied', error.errno)\n"
    )
    assert sandbox.python(code).stdout.startswith("denied")
    ping4 = sandbox.run(["ping", "-c", "1", "-W", "1", "198.51.100.7"])
    ping6 = sandbox.run(["ping", "-6", "-c", "1", "-W", "1", "2001:db8::7"])
    assert ping4.returncode != 0
    assert ping6.returncode != 0


def test_query_to_other_server_answered_by_policy(runtad: RuntadProcess) -> None:
    sandbox = enforced(runtad, ["pypi.org"])
    allowed = sandbox.dig("@192.0.2.99", "pypi.org", "A", "+short")
    denied = sandbox.dig("@192.0.2.99", "example.com", "A")
    denied_tcp = sandbox.dig("@192.0.2.99", "+tcp", "example.com", "A")
    assert allowed.stdout.split() == ["192.0.2.10"]
    assert "status: NXDOMAIN" in denied.stdout
    assert "status: NXDOMAIN" in denied_tcp.stdout


def test_exfil_queries_never_reach_upstream(runtad: RuntadProcess) -> None:
    sandbox = enforced(runtad, ["pypi.org"])
    lab = runtad.lab
    for target in ("@8.8.8.8", f"@{lab.dns_address}", "@127.0.0.11"):
        sandbox.dig(target, "a.exfil.test")
        sandbox.dig(target, "+tcp", "a.exfil.test")
    sandbox.dig("-p", "5353", f"@{lab.dns_address}", "a.exfil.test")
    seen = [query["qname"].lower().rstrip(".") for query in lab.dns.queries()]
    assert "a.exfil.test" not in seen


def test_cname_chain_from_allowed_name(runtad: RuntadProcess) -> None:
    lab = runtad.lab
    lab.add_server_address("192.0.2.20")
    lab.add_web_server("192.0.2.20", ["chain.example.test"])
    lab.dns.set_records("chain.example.test", "CNAME", ["edge.cdn.test"], 300)
    lab.dns.set_records("edge.cdn.test", "CNAME", ["E1.CDN.test"], 120)
    lab.dns.set_records("E1.CDN.test", "A", ["192.0.2.20"], 300)
    sandbox = enforced(runtad, ["chain.example.test"])
    result = sandbox.curl("https://chain.example.test/")
    assert result.stdout == "200", result.stderr + sandbox.dig("chain.example.test").stdout
    # The intermediate names do not become allowed themselves.
    assert "status: NXDOMAIN" in sandbox.dig("edge.cdn.test", "A").stdout
    entry = next(row for row in sandbox.egress()["entries"] if row["host"] == "chain.example.test")
    assert [item["address"] for item in entry["addresses"]] == ["192.0.2.20"]


def test_disable_lets_everything_through(runtad: RuntadProcess) -> None:
    sandbox = enforced(runtad, ["pypi.org"])
    assert sandbox.curl("https://example.com/").returncode == 6
    assert sandbox.post("disable").status_code == 200
    assert sandbox.curl("https://example.com/").stdout == "200"
    assert sandbox.curl("http://198.51.100.7/").stdout == "200"


def test_enable_cuts_open_connection(runtad: RuntadProcess) -> None:
    sandbox = runtad.create_sandbox()
    download = sandbox.popen(
        [
            "curl",
            "-sS",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "http://198.51.100.7/slow?seconds=15",
        ],
        stdout=__import__("subprocess").PIPE,
        stderr=__import__("subprocess").PIPE,
    )
    time.sleep(1.5)
    assert download.poll() is None  # still downloading
    started = time.monotonic()
    assert sandbox.post("enable").status_code == 200
    _, stderr = download.communicate(timeout=10)
    assert download.returncode not in (0, 28), stderr  # ended by the policy, not by timeout
    assert time.monotonic() - started < 5


def test_remove_host_cuts_its_flows_and_keeps_others(runtad: RuntadProcess) -> None:
    import subprocess

    sandbox = enforced(runtad, ["pypi.org", "files.pythonhosted.org"])
    keep = sandbox.popen(
        [
            "curl",
            "-sS",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "http://pypi.org/slow?seconds=4",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    cut = sandbox.popen(
        [
            "curl",
            "-sS",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "http://files.pythonhosted.org/slow?seconds=15",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    time.sleep(1.5)
    assert sandbox.post("remove", ["files.pythonhosted.org"]).status_code == 200
    cut_out, cut_err = cut.communicate(timeout=10)
    keep_out, keep_err = keep.communicate(timeout=15)
    assert cut.returncode not in (0, 28), cut_err
    assert keep.returncode == 0, keep_err
    assert keep_out == "200"


def test_unrelated_change_keeps_connection(runtad: RuntadProcess) -> None:
    import subprocess

    sandbox = enforced(runtad, ["pypi.org"])
    download = sandbox.popen(
        [
            "curl",
            "-sS",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "http://pypi.org/slow?seconds=4",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    time.sleep(1)
    assert sandbox.post("allow", ["files.pythonhosted.org"]).status_code == 200
    assert sandbox.post("enable").status_code == 200  # a re-apply that changes nothing
    out, err = download.communicate(timeout=15)
    assert download.returncode == 0, err
    assert out == "200"


def test_enable_twice_is_a_no_op(runtad: RuntadProcess) -> None:
    sandbox = enforced(runtad, ["pypi.org"])
    version = sandbox.egress()["version"]
    assert sandbox.post("enable").status_code == 200
    assert sandbox.egress()["version"] == version
    assert sandbox.curl("https://pypi.org/").stdout == "200"
    assert sandbox.curl("https://example.com/").returncode == 6


def test_unresolvable_host_shows_unresolved(runtad: RuntadProcess) -> None:
    sandbox = enforced(runtad, ["pypi.org", "no-such-host.invalid"])
    rows = {row["host"]: row for row in sandbox.egress()["entries"]}
    assert rows["no-such-host.invalid"]["status"] == "unresolved"
    assert rows["pypi.org"]["status"] == "resolved"
    assert sandbox.curl("https://example.com/").returncode == 6
    assert sandbox.curl("https://pypi.org/").stdout == "200"
