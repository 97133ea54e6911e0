"""Prometheus text exposition of runtad's metrics."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from runtad import metrics


@dataclass
class FakePolicy:
    enabled: bool
    version: int


@dataclass
class FakeRule:
    kind: str


@dataclass
class FakeBook:
    addresses: set[str] = field(default_factory=set)

    def live_addresses(self) -> set[str]:
        return set(self.addresses)


@dataclass
class FakeSandbox:
    policy: FakePolicy
    rules: list[FakeRule]
    book: FakeBook


def sandboxes() -> dict[str, FakeSandbox]:
    return {
        "worker": FakeSandbox(
            FakePolicy(True, 4),
            [FakeRule("exact"), FakeRule("exact"), FakeRule("wildcard")],
            FakeBook({"192.0.2.10", "192.0.2.11", "2001:db8::10"}),
        ),
        "idle": FakeSandbox(FakePolicy(False, 1), [], FakeBook()),
    }


def scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Render the registry as text, parse it back, and index samples by name and labels."""
    body, content_type = metrics.render(None, registry)
    assert content_type.startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def watched() -> CollectorRegistry:
    registry = CollectorRegistry()
    metrics.watch_sandboxes(sandboxes, registry)
    return registry


def test_sandbox_collector_policy_version() -> None:
    samples = scrape(watched())
    assert samples[("runtad_policy_version", (("runtime", "worker"),))] == 4
    assert samples[("runtad_policy_version", (("runtime", "idle"),))] == 1


def test_sandbox_collector_enforcement_counts() -> None:
    samples = scrape(watched())
    assert samples[("runtad_sandboxes", (("enforcement", "enabled"),))] == 1
    assert samples[("runtad_sandboxes", (("enforcement", "disabled"),))] == 1
    assert samples[("runtad_policy_enabled", (("runtime", "worker"),))] == 1
    assert samples[("runtad_policy_enabled", (("runtime", "idle"),))] == 0


def test_sandbox_collector_set_elements_by_family() -> None:
    samples = scrape(watched())
    assert samples[("runtad_set_elements", (("family", "ipv4"), ("runtime", "worker")))] == 2
    assert samples[("runtad_set_elements", (("family", "ipv6"), ("runtime", "worker")))] == 1
    assert samples[("runtad_set_elements", (("family", "ipv4"), ("runtime", "idle")))] == 0


def test_sandbox_collector_allowed_hosts_by_kind() -> None:
    samples = scrape(watched())
    assert samples[("runtad_allowed_hosts", (("kind", "exact"), ("runtime", "worker")))] == 2
    assert samples[("runtad_allowed_hosts", (("kind", "wildcard"), ("runtime", "worker")))] == 1


def test_sandbox_collector_reads_at_scrape_time() -> None:
    live = sandboxes()
    registry = CollectorRegistry()
    metrics.watch_sandboxes(lambda: live, registry)
    del live["idle"]
    live["worker"].policy.version = 5
    samples = scrape(registry)
    assert samples[("runtad_policy_version", (("runtime", "worker"),))] == 5
    assert ("runtad_policy_version", (("runtime", "idle"),)) not in samples


def test_render_openmetrics_when_asked() -> None:
    body, content_type = metrics.render("application/openmetrics-text; version=1.0.0", watched())
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")


def test_registry_exposes_daemon_metrics() -> None:
    metrics.record_start("9.9.9")
    metrics.record_reconcile(0.25)
    samples = scrape(metrics.REGISTRY)
    assert samples[("runtad_build_info", (("version", "9.9.9"),))] == 1
    assert samples[("runtad_reconcile_duration_seconds", ())] == 0.25
    assert samples[("runtad_start_time_seconds", ())] > 0
    assert ("process_open_fds", ()) in samples


def test_registry_describes_counters_for_other_parts() -> None:
    names = {family.name for family in metrics.REGISTRY.collect()}
    for expected in (
        "runtad_dns_queries", "runtad_set_update_failures", "runtad_nft_transaction_seconds",
        "runtad_gateway_connections", "runtad_gateway_active_connections",
        "runtad_audit_events_written", "runtad_audit_events_dropped",
        "runtad_kernel_log_events_lost", "runtad_config_reloads",
    ):
        assert expected in names


def test_nft_histogram_exposes_buckets() -> None:
    metrics.NFT_TRANSACTION_SECONDS.labels(operation="set_update").observe(0.003)
    samples = scrape(metrics.REGISTRY)
    bucket = ("runtad_nft_transaction_seconds_bucket", (("le", "0.005"), ("operation", "set_update")))
    assert samples[bucket] >= 1


def test_counter_total_sums_labels() -> None:
    counter = Counter("example_events_total", "Example.", ["reason"], registry=CollectorRegistry())
    counter.labels(reason="a").inc(2)
    counter.labels(reason="b").inc(3)
    assert metrics.counter_total(counter) == 5
    assert metrics.counter_value(counter, reason="b") == 3
    assert metrics.counter_value(counter, reason="c") == 0


def test_dropped_events_reads_counters() -> None:
    before = metrics.dropped_events()
    metrics.AUDIT_EVENTS_DROPPED.labels(reason="queue_full").inc(3)
    metrics.KERNEL_LOG_EVENTS_LOST.labels(reason="overrun").inc()
    metrics.DNS_QUERIES.labels(verdict="dropped").inc(2)
    metrics.DNS_QUERIES.labels(verdict="denied").inc(7)
    after = metrics.dropped_events()
    assert after["audit"] - before["audit"] == 3
    assert after["kernel_log"] - before["kernel_log"] == 1
    assert after["dns_queries"] - before["dns_queries"] == 2
