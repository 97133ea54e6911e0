"""Gateway verdicts from a first flight and a destination, against a fake sandbox policy."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

from runtad.gateway import decision
from runtad.gateway.addresscache import NameResolutionError
from runtad.gateway.clienthello import ClientHello
from runtad.gateway.decision import FirstFlight, Verdict, decide
from runtad.gateway.http1 import HttpRequest
from runtad.hosts import HostMatcher, parse_rules


@dataclass
class FakePolicy:
    hosts: list[str]
    resolved: dict[str, dict[str, int]]
    allowed_addresses: set[str] = field(default_factory=set)
    enforced: bool = True
    inspect: str = decision.INSPECT_FIRST
    name: str = "worker"
    lookups: list[tuple[str, bool]] = field(default_factory=list)

    def judge(self, host: str) -> str | None:
        rule = HostMatcher(parse_rules(self.hosts)).match(host)
        return rule.pattern if rule is not None else None

    async def addresses_for(self, host: str, *, fresh: bool = False) -> Mapping[str, int]:
        self.lookups.append((host, fresh))
        if host not in self.resolved:
            raise NameResolutionError(host, "A lookup returned NXDOMAIN")
        return self.resolved[host]

    async def learn_sni(self, pattern: str, address: str, ttl: int) -> None:
        raise AssertionError("decide() never learns")

    def is_allowed_address(self, address: str) -> bool:
        return address in self.allowed_addresses


def policy(**overrides: object) -> FakePolicy:
    values: dict[str, object] = {
        "hosts": ["pypi.org", "*.pythonhosted.org"],
        "resolved": {
            "pypi.org": {"192.0.2.10": 300},
            "files.pythonhosted.org": {"192.0.2.11": 120, "2001:db8::11": 120},
        },
    }
    values.update(overrides)
    return FakePolicy(**values)  # type: ignore[arg-type]


def tls(server_name: str | None, ech: bool = False) -> FirstFlight:
    return FirstFlight(b"", "tls", hello=ClientHello(server_name, ech, 0x0303, ()))


def http(host: str | None, target_host: str | None = None, path: str | None = "/simple/") -> FirstFlight:
    request = HttpRequest("GET", path or "*", "1.1", host, target_host, path)
    return FirstFlight(b"", "http", request=request)


def run(fake: FakePolicy, flight: FirstFlight, destination: str) -> Verdict:
    return asyncio.run(decide(fake, flight, destination))


def test_tls_allowed_sni_and_address() -> None:
    verdict = run(policy(), tls("files.pythonhosted.org"), "192.0.2.11")
    assert verdict.allowed
    assert verdict.pattern == "*.pythonhosted.org"
    assert verdict.learn_ttl == 120


def test_tls_sni_case_and_trailing_dot() -> None:
    verdict = run(policy(), tls("PyPI.org."), "192.0.2.10")
    assert verdict.allowed
    assert verdict.host == "pypi.org"


def test_tls_ipv6_destination() -> None:
    assert run(policy(), tls("files.pythonhosted.org"), "2001:db8::11").allowed


def test_tls_sni_not_allowed() -> None:
    verdict = run(policy(), tls("Other.Test"), "192.0.2.10")
    assert not verdict.allowed
    assert verdict.reason == decision.SNI_NOT_ALLOWED
    assert verdict.host == "other.test"


def test_tls_apex_of_wildcard_not_allowed() -> None:
    assert run(policy(), tls("pythonhosted.org"), "192.0.2.13").reason == decision.SNI_NOT_ALLOWED


def test_tls_ip_literal_sni_not_allowed() -> None:
    verdict = run(policy(allowed_addresses={"192.0.2.10"}), tls("192.0.2.10"), "192.0.2.10")
    assert verdict.reason == decision.SNI_NOT_ALLOWED
    assert verdict.host == "192.0.2.10"


def test_tls_address_mismatch() -> None:
    fake = policy()
    verdict = run(fake, tls("files.pythonhosted.org"), "198.51.100.70")
    assert verdict.reason == decision.SNI_ADDRESS_MISMATCH
    assert fake.lookups == [("files.pythonhosted.org", False), ("files.pythonhosted.org", True)]


def test_tls_unresolvable_host() -> None:
    verdict = run(policy(), tls("nowhere.pythonhosted.org"), "192.0.2.11")
    assert verdict.reason == decision.RESOLVE_FAILED
    assert verdict.detail is not None and "NXDOMAIN" in verdict.detail


def test_tls_missing_sni_denied() -> None:
    assert run(policy(), tls(None), "192.0.2.10").reason == decision.SNI_MISSING


def test_tls_missing_sni_to_allowed_address() -> None:
    verdict = run(policy(allowed_addresses={"192.0.2.10"}), tls(None), "192.0.2.10")
    assert verdict.allowed
    assert verdict.learn_ttl is None


def test_tls_ech_with_denied_outer_name() -> None:
    fake = policy(allowed_addresses={"192.0.2.10"})
    verdict = run(fake, tls("ech-public.cdn.test", ech=True), "192.0.2.10")
    assert verdict.reason == decision.ECH_NOT_ALLOWED
    assert verdict.ech


def test_tls_ech_with_allowed_outer_name() -> None:
    verdict = run(policy(), tls("pypi.org", ech=True), "192.0.2.10")
    assert verdict.allowed
    assert verdict.ech


def test_tls_ech_without_sni_denied() -> None:
    assert run(policy(), tls(None, ech=True), "192.0.2.10").reason == decision.ECH_NOT_ALLOWED


def test_strict_mode_learns_nothing() -> None:
    verdict = run(policy(inspect=decision.INSPECT_ALL), tls("pypi.org"), "192.0.2.10")
    assert verdict.allowed
    assert verdict.learn_ttl is None


def test_strict_mode_denied_name_on_allowed_address() -> None:
    fake = policy(inspect=decision.INSPECT_ALL, allowed_addresses={"192.0.2.10"})
    assert run(fake, tls("other.test"), "192.0.2.10").reason == decision.SNI_NOT_ALLOWED


def test_enforcement_off_allows_anything() -> None:
    verdict = run(policy(enforced=False), tls("other.test"), "198.51.100.7")
    assert verdict.allowed
    assert verdict.learn_ttl is None


def test_http_allowed_with_path() -> None:
    verdict = run(policy(), http("pypi.org"), "192.0.2.10")
    assert verdict.allowed
    assert verdict.path == "/simple/"


def test_http_host_not_allowed() -> None:
    verdict = run(policy(), http("OTHER.test"), "192.0.2.10")
    assert verdict.reason == decision.HOST_HEADER_NOT_ALLOWED
    assert verdict.host == "other.test"
    assert verdict.path == "/simple/"


def test_http_absolute_form_mismatch() -> None:
    verdict = run(policy(), http("pypi.org", target_host="other.test", path="/"), "192.0.2.10")
    assert verdict.reason == decision.HOST_MISMATCH
    assert verdict.host == "pypi.org"
    assert verdict.target_host == "other.test"
    assert verdict.path == "/"


def test_http_absolute_form_agrees() -> None:
    assert run(policy(), http("pypi.org.", target_host="PYPI.org"), "192.0.2.10").allowed


def test_http_address_mismatch() -> None:
    assert run(policy(), http("pypi.org"), "192.0.2.11").reason == decision.HOST_ADDRESS_MISMATCH


def test_http_missing_host() -> None:
    assert run(policy(), http(None), "192.0.2.10").reason == decision.HOST_MISSING


def test_unknown_protocol_to_allowed_address() -> None:
    flight = FirstFlight(b"SSH-2.0-x\r\n", None, invalid="not an HTTP/1 request")
    assert run(policy(allowed_addresses={"192.0.2.10"}), flight, "192.0.2.10").allowed


def test_unknown_protocol_denied() -> None:
    flight = FirstFlight(b"\x00", None, invalid="not an HTTP/1 request")
    assert run(policy(), flight, "192.0.2.10").reason == decision.FIRST_FLIGHT_INVALID


def test_malformed_tls_denied_even_to_allowed_address() -> None:
    flight = FirstFlight(b"\x16", "tls", invalid="server_name lists two host names")
    verdict = run(policy(allowed_addresses={"192.0.2.10"}), flight, "192.0.2.10")
    assert verdict.reason == decision.FIRST_FLIGHT_INVALID


def test_timeout_denied() -> None:
    flight = FirstFlight(b"\x16\x03", "tls", timed_out=True)
    assert run(policy(), flight, "192.0.2.10").reason == decision.FIRST_FLIGHT_TIMEOUT


def test_every_deny_reason_listed() -> None:
    names = [value for key, value in vars(decision).items() if key.isupper() and isinstance(value, str)]
    reasons = {name for name in names if name not in (decision.INSPECT_ALL, decision.INSPECT_FIRST)}
    assert reasons == decision.DENY_REASONS
