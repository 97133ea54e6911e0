"""Resource abuse from one sandbox must not starve another sandbox's DNS or gateway, nor the API.

Each test measures a quiet baseline, then the same during a bounded flood from another
sandbox, and prints both as one "measured:" line (run pytest with -rP to see them).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.e2e.runtad_process import RuntadProcess
from tests.hostile.attempts import SYSTEM_PYTHON, enforced_sandbox, events_of, start_in
from tests.hostile.flood_programs import (
    DENIED_FLOOD,
    DNS_FLOOD,
    DNS_LATENCY,
    GATEWAY_HOLD,
    GATEWAY_LATENCY,
    ApiTimer,
    Percentiles,
    finish,
)
from tests.lab.topology import Lab

pytestmark = [pytest.mark.root, pytest.mark.slow]

FLOOD_QUERIES = 20_000
FLOOD_SECONDS = 10.0
# Any address: every port-53 packet of a sandbox is redirected to its DNS listener.
ANY_SERVER = "192.0.2.99"
BASELINE_SECONDS = 3.0
PROBE_INTERVAL = 0.05
# Bounds for the victim during a flood. A quiet answer takes a few milliseconds (one
# upstream round trip in the lab); the bounds allow a loaded two-CPU test machine.
VICTIM_DNS_P99 = 0.25
API_P99 = 0.5
GATEWAY_LIMIT = 64


def measure_dns(runtad: RuntadProcess, name: str, seconds: float) -> dict:  # type: ignore[type-arg]
    process = start_in(runtad, name, "nobody", [
        SYSTEM_PYTHON, "-c", DNS_LATENCY, str(seconds), str(PROBE_INTERVAL), ANY_SERVER, "pypi.org",
    ])  # fmt: skip
    return finish(process, timeout=seconds + 30)


def test_dns_flood_spares_other_sandbox(runtad: RuntadProcess) -> None:
    attacker = enforced_sandbox(runtad, [])
    victim = enforced_sandbox(runtad, ["pypi.org"])
    with ApiTimer(runtad) as api_quiet:
        quiet = measure_dns(runtad, victim.name, BASELINE_SECONDS)

    flood = start_in(runtad, attacker.name, "nobody", [
        SYSTEM_PYTHON, "-c", DNS_FLOOD, str(FLOOD_QUERIES), str(FLOOD_SECONDS), ANY_SERVER,
        "flood.test",
    ])  # fmt: skip
    time.sleep(1.0)
    with ApiTimer(runtad) as api_loaded:
        loaded = measure_dns(runtad, victim.name, FLOOD_SECONDS - 3)
    flooded = finish(flood, timeout=FLOOD_SECONDS + 30)

    quiet_dns, loaded_dns = Percentiles.of(quiet["latencies"]), Percentiles.of(loaded["latencies"])
    quiet_api, loaded_api = Percentiles.of(api_quiet.samples), Percentiles.of(api_loaded.samples)
    print(
        f"measured: DNS flood {flooded['sent']} queries in {flooded['seconds']:.1f} s,"
        f" {flooded['answered']} answered; victim DNS quiet {quiet_dns.text()},"
        f" during {loaded_dns.text()}, lost {loaded['lost']}; API quiet {quiet_api.text()},"
        f" during {loaded_api.text()}, failed {api_loaded.failures}"
    )
    assert loaded["lost"] == 0
    assert loaded["rcodes"] == [0]
    assert loaded_dns.p99 < VICTIM_DNS_P99
    assert api_loaded.failures == 0
    assert loaded_api.p99 < API_P99
    denials = [event for event in events_of(runtad, attacker.name) if event["action"] == "deny"]
    assert denials, "the flood left no deny event"


def test_allowed_name_flood_spares_other_sandbox(runtad: RuntadProcess) -> None:
    # Every query of this flood is allowed, so runtad forwards each one upstream.
    attacker = enforced_sandbox(runtad, ["*.flood.test"])
    victim = enforced_sandbox(runtad, ["pypi.org"])
    quiet = measure_dns(runtad, victim.name, BASELINE_SECONDS)

    flood = start_in(runtad, attacker.name, "nobody", [
        SYSTEM_PYTHON, "-c", DNS_FLOOD, str(FLOOD_QUERIES), str(FLOOD_SECONDS), ANY_SERVER,
        "flood.test",
    ])  # fmt: skip
    time.sleep(1.0)
    loaded = measure_dns(runtad, victim.name, FLOOD_SECONDS - 3)
    flooded = finish(flood, timeout=FLOOD_SECONDS + 30)

    quiet_dns = Percentiles.of(quiet["latencies"])
    loaded_dns = Percentiles.of(loaded["latencies"]) if loaded["latencies"] else None
    print(
        f"measured: allowed-name flood {flooded['sent']} queries in {flooded['seconds']:.1f} s,"
        f" {flooded['answered']} answered; victim DNS quiet {quiet_dns.text()},"
        f" during {loaded_dns.text() if loaded_dns else 'no answers'},"
        f" lost {loaded['lost']}, rcodes {loaded['rcodes']}"
    )
    assert loaded["lost"] == 0
    assert loaded["rcodes"] == [0]
    assert loaded_dns is not None
    assert loaded_dns.p99 < VICTIM_DNS_P99


def test_denied_connection_flood_spares_other_sandbox(runtad: RuntadProcess) -> None:
    attacker = enforced_sandbox(runtad, [])
    victim = enforced_sandbox(runtad, ["pypi.org"])
    with ApiTimer(runtad) as api_quiet:
        quiet = measure_dns(runtad, victim.name, BASELINE_SECONDS)

    flood = start_in(runtad, attacker.name, "nobody", [
        SYSTEM_PYTHON, "-c", DENIED_FLOOD, str(FLOOD_QUERIES), str(FLOOD_SECONDS), "198.51.100.77",
    ])  # fmt: skip
    time.sleep(1.0)
    with ApiTimer(runtad) as api_loaded:
        loaded = measure_dns(runtad, victim.name, FLOOD_SECONDS - 3)
    flooded = finish(flood, timeout=FLOOD_SECONDS + 60)
    # The collector reports the rate-limited rest every 5 s as events_suppressed.
    deadline = time.monotonic() + 12
    suppressed = 0
    while not suppressed and time.monotonic() < deadline:
        time.sleep(1.0)
        suppressed = sum(
            event["count"] for event in events_of(runtad, attacker.name)
            if event["reason"] == "events_suppressed"
        )  # fmt: skip

    quiet_dns, loaded_dns = Percentiles.of(quiet["latencies"]), Percentiles.of(loaded["latencies"])
    quiet_api, loaded_api = Percentiles.of(api_quiet.samples), Percentiles.of(api_loaded.samples)
    print(
        f"measured: denied flood {flooded['outcomes']} in {flooded['seconds']:.1f} s,"
        f" {suppressed} counted as suppressed; victim DNS quiet {quiet_dns.text()},"
        f" during {loaded_dns.text()}, lost {loaded['lost']}; API quiet {quiet_api.text()},"
        f" during {loaded_api.text()}"
    )
    assert set(flooded["outcomes"]) <= {"ConnectionRefusedError", "PermissionError"}
    assert flooded["seconds"] < FLOOD_SECONDS + 5
    assert suppressed > 0
    assert loaded["lost"] == 0
    assert loaded_dns.p99 < VICTIM_DNS_P99
    assert loaded_api.p99 < API_P99


@pytest.fixture(scope="module")
def limited_runtad(
    internet: Lab, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RuntadProcess]:
    """A daemon whose gateways take GATEWAY_LIMIT connections and wait 30 s for a first flight."""
    daemon = RuntadProcess(
        internet, tmp_path_factory.mktemp("limited"),
        gateway_max_connections=GATEWAY_LIMIT, gateway_first_flight_timeout=30.0,
    )  # fmt: skip
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.close()


def measure_gateway(runtad: RuntadProcess, name: str) -> dict:  # type: ignore[type-arg]
    process = start_in(runtad, name, "nobody", [
        SYSTEM_PYTHON, "-c", GATEWAY_LATENCY, "40", "198.51.100.7", "example.com",
    ])  # fmt: skip
    return finish(process, timeout=60)


def test_gateway_limit_spares_other_sandbox(limited_runtad: RuntadProcess) -> None:
    attacker = enforced_sandbox(limited_runtad, [])
    victim = enforced_sandbox(limited_runtad, ["pypi.org"])
    quiet = measure_gateway(limited_runtad, victim.name)

    holder = start_in(limited_runtad, attacker.name, "nobody", [
        SYSTEM_PYTHON, "-c", GATEWAY_HOLD, str(GATEWAY_LIMIT), "8", "198.51.100.7", "5",
    ])  # fmt: skip
    assert holder.stdout is not None
    held = __import__("json").loads(holder.stdout.readline())
    loaded = measure_gateway(limited_runtad, victim.name)
    allowed = victim.curl("http://pypi.org/")
    holder.communicate(timeout=30)

    quiet_gateway, loaded_gateway = (
        Percentiles.of(quiet["latencies"]),
        Percentiles.of(loaded["latencies"]),
    )
    print(
        f"measured: attacker held {held['held']} gateway connections, extra ones ended"
        f" {held['extra']} within {held['extra_seconds']:.3f} s; victim gateway decision"
        f" quiet {quiet_gateway.text()}, during {loaded_gateway.text()}"
    )
    assert held["held"] == GATEWAY_LIMIT
    assert held["extra"] == {"ConnectionResetError": 5}
    assert held["extra_seconds"] < 1.0
    assert loaded["outcomes"] == {"ConnectionResetError": 40}
    assert loaded_gateway.p99 < 0.25
    assert allowed.stdout == "200", allowed.stderr
    busy = [
        event
        for event in events_of(limited_runtad, attacker.name)
        if event["reason"] == "gateway_busy"
    ]
    assert busy, "no gateway_busy event for the connections above the limit"


DNS_RATE = 100
DNS_BURST = 100


@pytest.fixture(scope="module")
def dns_limited_runtad(
    internet: Lab, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RuntadProcess]:
    """A daemon whose sandboxes may each send DNS_RATE queries a second (bursts of DNS_BURST)."""
    daemon = RuntadProcess(
        internet, tmp_path_factory.mktemp("dns-limited"), dns_rate=DNS_RATE, dns_burst=DNS_BURST
    )
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.close()


def test_dns_rate_limit_keeps_flood_from_upstream(dns_limited_runtad: RuntadProcess) -> None:
    runtad = dns_limited_runtad
    attacker = enforced_sandbox(runtad, ["*.flood.test"])
    victim = enforced_sandbox(runtad, ["pypi.org"])
    runtad.lab.dns.clear_queries()
    dropped_before = runtad.api("GET", "/status").json()["dropped_events"]["dns_queries"]

    flood = start_in(runtad, attacker.name, "nobody", [
        SYSTEM_PYTHON, "-c", DNS_FLOOD, "2000", "2", ANY_SERVER, "flood.test",
    ])  # fmt: skip
    time.sleep(0.5)
    loaded = measure_dns(runtad, victim.name, 1.0)
    flooded = finish(flood, timeout=40)

    forwarded = [query for query in runtad.lab.dns.queries() if query["qname"].endswith("flood.test.")]
    dropped = runtad.api("GET", "/status").json()["dropped_events"]["dns_queries"] - dropped_before
    print(f"measured: {flooded['answered']} of 2000 flood queries answered, {len(forwarded)} forwarded, {dropped} limited")
    # Every query is answered (SERVFAIL over the limit), and about burst + rate x seconds
    # reach the upstream: 100 + 100 x 2.5 at most, with slack for a slow machine.
    assert flooded["answered"] >= 1900
    assert len(forwarded) <= DNS_BURST + DNS_RATE * 4
    assert dropped >= 2000 - (DNS_BURST + DNS_RATE * 4)
    assert loaded["lost"] == 0
    assert loaded["rcodes"] == [0]
