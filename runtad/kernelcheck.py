"""Check at start that the kernel has every netfilter feature enforcement needs.

runtad builds each feature once in a scratch network namespace of its own: an inet
table, a set with timeouts, the nat output hook that redirects DNS, an NFLOG rule, the
whole sandbox ruleset, and a conntrack netlink dump. A kernel that lacks one (no set
timeouts, no nat hook, a gVisor-style netns) stops runtad before it touches any sandbox,
with the missing feature named, so a sandbox is never left half enforced.
`runtad --check` runs the same checks and prints them.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import Conntrack
from pyroute2 import netns as pyroute2_netns

from . import ruleset
from .config import Config
from .errors import RuntadError
from .nft import Command, NftContext, NftError
from .netns import call_in_netns

CHECK_TABLE = {"family": "inet", "name": "runta_check"}


@dataclass(frozen=True)
class KernelCheck:
    """One feature and whether the kernel has it (detail: the kernel's refusal)."""

    feature: str
    ok: bool
    detail: str = ""

    def to_json(self) -> dict[str, object]:
        return {"feature": self.feature, "ok": self.ok, "detail": self.detail}


class KernelFeatureMissing(RuntadError):
    """The kernel lacks a feature that enforcement needs, so runtad does not start."""

    def __init__(self, failed: list[KernelCheck]) -> None:
        names = "; ".join(f"{check.feature}: {check.detail}" for check in failed)
        super().__init__(
            f"the kernel lacks what egress enforcement needs ({names}). runtad did not start,"
            " and every sandbox keeps the rules its kernel table holds. Run runtad on a kernel"
            " with nftables (inet tables, sets with timeouts, nat), NFLOG and conntrack, and"
            " see `runtad --check`"
        )
        self.failed = failed


def _probes(config: Config) -> list[tuple[str, list[Command]]]:
    """Return (feature, nftables batch) pairs, each applied on top of the ones before."""
    table = {"table": CHECK_TABLE}
    chain = {"family": "inet", "table": "runta_check"}
    template = ruleset.load_template(ruleset.SANDBOX_TEMPLATE)
    options = ruleset.SandboxRulesetOptions(
        enabled=True, dns_port=config.dns_listen_port, log_group=config.log_group,
        log_rate=config.log_rate, log_burst=config.log_burst,
        gateway_port=config.gateway_port, gateway_mark=config.gateway_mark,
    )  # fmt: skip
    return [
        ("nftables inet table", [{"add": table}]),
        ("set with timeouts", [
            {"add": {"set": {**chain, "name": "probe4", "type": "ipv4_addr", "flags": ["timeout"]}}},
            {"add": {"element": {**chain, "name": "probe4", "elem": [
                {"elem": {"val": "192.0.2.1", "timeout": 5}},
            ]}}},
        ]),
        ("nat output hook (DNS redirect)", [
            {"add": {"chain": {**chain, "name": "nat_probe", "type": "nat", "hook": "output",
                               "prio": -100, "policy": "accept"}}},
            {"add": {"rule": {**chain, "chain": "nat_probe", "expr": [
                {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}},
                           "right": 53}},
                {"redirect": {"port": config.dns_listen_port}},
            ]}}},
        ]),
        ("NFLOG (log group)", [
            {"add": {"chain": {**chain, "name": "log_probe", "type": "filter", "hook": "output",
                               "prio": 0, "policy": "accept"}}},
            {"add": {"rule": {**chain, "chain": "log_probe", "expr": [
                {"log": {"prefix": "runta check ", "group": config.log_group}},
            ]}}},
        ]),
        ("sandbox ruleset", ruleset.build_sandbox_ruleset(template, options)),
    ]  # fmt: skip


def _conntrack_dump() -> None:
    with Conntrack(nfgen_family=socket.AF_INET) as conntrack:
        list(conntrack.dump_entries())


def _run_in(netns_path: Path, config: Config) -> list[KernelCheck]:
    checks: list[KernelCheck] = []
    context = NftContext.open(netns_path)
    for feature, batch in _probes(config):
        try:
            context.run(batch)
        except NftError as error:
            checks.append(KernelCheck(feature, False, error.detail))
            # Later batches build on this one, so they cannot tell anything more.
            break
        checks.append(KernelCheck(feature, True))
    try:
        call_in_netns(netns_path, _conntrack_dump)
    except OSError as error:
        checks.append(KernelCheck("conntrack netlink", False, f"{type(error).__name__}: {error}"))
    else:
        checks.append(KernelCheck("conntrack netlink", True))
    return checks


def check_kernel(config: Config, run: Callable[[Path, Config], list[KernelCheck]] = _run_in) -> list[KernelCheck]:
    """Build each needed feature in a scratch namespace and report which the kernel took."""
    name = f"runta-check-{os.getpid()}-{secrets.token_hex(3)}"
    try:
        pyroute2_netns.create(name)
    except OSError as error:
        return [KernelCheck("network namespaces", False, f"{type(error).__name__}: {error}")]
    try:
        return [KernelCheck("network namespaces", True), *run(Path("/run/netns") / name, config)]
    finally:
        pyroute2_netns.remove(name)


def require_kernel_features(checks: list[KernelCheck]) -> None:
    """Raise KernelFeatureMissing if any check failed."""
    failed = [check for check in checks if not check.ok]
    if failed:
        raise KernelFeatureMissing(failed)


def format_checks(checks: list[KernelCheck]) -> str:
    """Render checks as lines of "ok" or "MISSING", the feature and the kernel's refusal."""
    lines = []
    for check in checks:
        mark = "ok     " if check.ok else "MISSING"
        lines.append(f"{mark} {check.feature}" + (f": {check.detail}" if check.detail else ""))
    return "\n".join(lines)
