"""Prometheus metrics of runtad: one registry, the counters other parts increment, and a
collector that reads the sandboxes at scrape time.

Counters and histograms below are daemon-wide, labelled only by a small fixed set of
values (verdict, reason, operation), so their series never grow with the number of
sandboxes. Per-sandbox values (policy version, allowlist and set sizes) are read from
the live sandboxes on every scrape instead, so a deleted sandbox's series disappear with
it. Scrapes run on the event loop, the same thread that changes the sandboxes, so they
read a consistent state without locks.

Parts increment the objects directly, for example
``metrics.DNS_QUERIES.labels(verdict="denied").inc()``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

# The *_created samples double every counter's series and no runtad dashboard reads them.
disable_created_metrics()

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

BUILD = Info("runtad_build", "runtad version.", registry=REGISTRY)
START_TIME = Gauge(
    "runtad_start_time_seconds", "Unix time at which runtad started.", registry=REGISTRY
)
LAST_RECONCILE = Gauge(
    "runtad_last_reconcile_timestamp_seconds",
    "Unix time at which the last reconcile of every sandbox finished.",
    registry=REGISTRY,
)
RECONCILE_DURATION = Gauge(
    "runtad_reconcile_duration_seconds",
    "Seconds the last reconcile of every sandbox took.",
    registry=REGISTRY,
)
CONFIG_RELOADS = Counter(
    "runtad_config_reloads_total",
    "Configuration reloads on SIGHUP, by result: applied or rejected.",
    ["result"],
    registry=REGISTRY,
)

# Incremented by the DNS proxy. verdict: forwarded, denied, servfail or dropped.
DNS_QUERIES = Counter(
    "runtad_dns_queries_total",
    "DNS queries answered by the sandbox DNS listeners, by verdict.",
    ["verdict"],
    registry=REGISTRY,
)
# Incremented where a set update fails; the DNS proxy then answers SERVFAIL.
SET_UPDATE_FAILURES = Counter(
    "runtad_set_update_failures_total",
    "Allow-set updates that the kernel rejected.",
    registry=REGISTRY,
)
# Observed around every libnftables transaction. operation: ruleset, set_update or list.
NFT_TRANSACTION_SECONDS = Histogram(
    "runtad_nft_transaction_seconds",
    "Seconds one libnftables transaction took, by operation.",
    ["operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)
# Incremented by the SNI and Host gateway. verdict: allowed, denied or error.
GATEWAY_CONNECTIONS = Counter(
    "runtad_gateway_connections_total",
    "TCP connections that the gateway checked, by verdict.",
    ["verdict"],
    registry=REGISTRY,
)
GATEWAY_ACTIVE = Gauge(
    "runtad_gateway_active_connections",
    "TCP connections the gateway is splicing now.",
    registry=REGISTRY,
)
# Incremented by the audit writer. source: dns, gateway or kernel.
AUDIT_EVENTS_WRITTEN = Counter(
    "runtad_audit_events_written_total",
    "Audit events stored, by source.",
    ["source"],
    registry=REGISTRY,
)
# reason: queue_full, rate_limited or write_failed.
AUDIT_EVENTS_DROPPED = Counter(
    "runtad_audit_events_dropped_total",
    "Audit events not stored, by reason.",
    ["reason"],
    registry=REGISTRY,
)
# Incremented by the NFLOG collector. reason: sequence_gap (NFULA_SEQ numbers that never
# arrived) or not_received (packets the log_reached counter saw, minus records received).
KERNEL_LOG_EVENTS_LOST = Counter(
    "runtad_kernel_log_events_lost_total",
    "NFLOG events the kernel sent but runtad never received, by reason.",
    ["reason"],
    registry=REGISTRY,
)


# Read-only properties in these protocols keep them covariant, so mypy checks that
# runtad.sandbox.Sandbox provides them where main.py registers the collector.
class PolicyView(Protocol):
    @property
    def enabled(self) -> bool: ...

    @property
    def version(self) -> int: ...


class RuleView(Protocol):
    @property
    def kind(self) -> str: ...


class AddressBookView(Protocol):
    def live_addresses(self) -> set[str]: ...


class SandboxView(Protocol):
    """The part of a sandbox that a scrape reads."""

    @property
    def policy(self) -> PolicyView: ...

    @property
    def rules(self) -> Sequence[RuleView]: ...

    @property
    def book(self) -> AddressBookView: ...


SandboxSource = Callable[[], Mapping[str, SandboxView]]


class SandboxCollector(Collector):
    """Per-sandbox gauges, read from the live sandboxes on every scrape."""

    def __init__(self, sandboxes: SandboxSource) -> None:
        self._sandboxes = sandboxes

    def collect(self) -> Iterator[Metric]:
        count = GaugeMetricFamily(
            "runtad_sandboxes", "Sandboxes by enforcement: enabled or disabled.",
            labels=["enforcement"],
        )
        version = GaugeMetricFamily(
            "runtad_policy_version", "Version of each sandbox's egress policy.", labels=["runtime"]
        )
        enabled = GaugeMetricFamily(
            "runtad_policy_enabled", "1 when a sandbox's enforcement is on, else 0.",
            labels=["runtime"],
        )
        hosts = GaugeMetricFamily(
            "runtad_allowed_hosts", "Allowlist entries of each sandbox, by kind: exact or wildcard.",
            labels=["runtime", "kind"],
        )
        elements = GaugeMetricFamily(
            "runtad_set_elements",
            "Live allow-set elements of each sandbox as runtad last wrote them, by family.",
            labels=["runtime", "family"],
        )
        totals = {"enabled": 0, "disabled": 0}
        for name, sandbox in sorted(self._sandboxes().items()):
            totals["enabled" if sandbox.policy.enabled else "disabled"] += 1
            version.add_metric([name], sandbox.policy.version)
            enabled.add_metric([name], 1 if sandbox.policy.enabled else 0)
            kinds = {"exact": 0, "wildcard": 0}
            for rule in sandbox.rules:
                kinds[rule.kind] = kinds.get(rule.kind, 0) + 1
            for kind, number in sorted(kinds.items()):
                hosts.add_metric([name, kind], number)
            addresses = sandbox.book.live_addresses()
            ipv6 = sum(1 for address in addresses if ":" in address)
            elements.add_metric([name, "ipv4"], len(addresses) - ipv6)
            elements.add_metric([name, "ipv6"], ipv6)
        for state, number in totals.items():
            count.add_metric([state], number)
        yield from (count, version, enabled, hosts, elements)


def record_start(version: str) -> None:
    BUILD.info({"version": version})
    START_TIME.set(time.time())


def record_reconcile(duration_seconds: float) -> None:
    LAST_RECONCILE.set(time.time())
    RECONCILE_DURATION.set(duration_seconds)


def watch_sandboxes(
    sandboxes: SandboxSource, registry: CollectorRegistry = REGISTRY
) -> SandboxCollector:
    """Register the per-sandbox collector; unregister it with registry.unregister."""
    collector = SandboxCollector(sandboxes)
    registry.register(collector)
    return collector


def counter_total(counter: Counter) -> float:
    """Return the sum of a counter over all its label values."""
    return sum(
        sample.value
        for metric in counter.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


def counter_value(counter: Counter, **labels: str) -> float:
    """Return one labelled series of a counter, 0 when it was never incremented."""
    return sum(
        sample.value
        for metric in counter.collect()
        for sample in metric.samples
        if sample.name.endswith("_total") and _has_labels(sample.labels, labels)
    )


def _has_labels(sample_labels: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    return all(sample_labels.get(key) == value for key, value in wanted.items())


def dropped_events() -> dict[str, int]:
    """Return events lost on the way to the audit trail, by where they were lost."""
    return {
        "audit": int(counter_total(AUDIT_EVENTS_DROPPED)),
        "kernel_log": int(counter_total(KERNEL_LOG_EVENTS_LOST)),
        "dns_queries": int(counter_value(DNS_QUERIES, verdict="dropped")),
    }


def render(accept_header: str | None, registry: CollectorRegistry = REGISTRY) -> tuple[bytes, str]:
    """Return the exposition body and its content type: OpenMetrics when Accept requests it."""
    encoder, content_type = choose_encoder(accept_header or "")
    return encoder(registry), content_type


def sample_names(registry: CollectorRegistry = REGISTRY) -> Iterable[str]:
    """Return the name of every sample the registry exposes now."""
    for metric in registry.collect():
        for sample in metric.samples:
            yield sample.name
