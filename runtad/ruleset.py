"""Pure builders of nftables JSON commands: the rules/ templates rendered, and set updates.

Nothing here talks to the kernel; NftContext.run applies what these functions return.
Setup and teardown come from the same template, so they cannot drift apart.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any, Iterable

from .nft import Command

SANDBOX_TEMPLATE = "sandbox.json"
HOST_TEMPLATE = "host.json"
SANDBOX_TABLE = "runta"
SET_IPV4 = "allow4"
SET_IPV6 = "allow6"


def load_template(name: str) -> dict[str, Any]:
    text = resources.files("runtad.rules").joinpath(name).read_text()
    template: dict[str, Any] = json.loads(text)
    return template


def substitute(node: Any, values: dict[str, Any]) -> Any:
    """Replace every "@name@" string in node by values[name], keeping the value's type."""
    if isinstance(node, str) and len(node) > 2 and node.startswith("@") and node.endswith("@"):
        key = node[1:-1]
        if key in values:
            return values[key]
        # "@allow4"-style set references have a single @ and are left alone; a
        # placeholder without a value is a template bug, not user input.
        raise KeyError(f"template placeholder {node!r} has no value")
    if isinstance(node, list):
        return [substitute(item, values) for item in node]
    if isinstance(node, dict):
        return {key: substitute(item, values) for key, item in node.items()}
    return node


def build_table(
    template: dict[str, Any], chain_rules: dict[str, list[str]], values: dict[str, Any]
) -> list[Command]:
    """Build one transaction that creates the table if needed and refills its chains.

    chain_rules maps each chain to the rule groups of the template that fill it, in
    order. Sets and named counters are added, never flushed: adding an object that
    exists leaves it and its elements as they are.
    """
    rendered = substitute(template, values)
    table = rendered["table"]
    family, name = table["family"], table["name"]
    base = {"family": family, "table": name}
    commands: list[Command] = [{"add": {"table": {"family": family, "name": name}}}]
    for spec in rendered["sets"]:
        commands.append({"add": {"set": {**base, **spec}}})
    for counter in rendered["counters"]:
        commands.append({"add": {"counter": {**base, "name": counter}}})
    for chain in rendered["chains"]:
        commands.append({"add": {"chain": {**base, **chain}}})
    for chain in rendered["chains"]:
        commands.append({"flush": {"chain": {**base, "name": chain["name"]}}})
    for chain_name, groups in chain_rules.items():
        for group in groups:
            for expr in rendered["rules"][group]:
                commands.append({"add": {"rule": {**base, "chain": chain_name, "expr": expr}}})
    return commands


def build_table_delete(template: dict[str, Any]) -> list[Command]:
    table = template["table"]
    return [{"delete": {"table": {"family": table["family"], "name": table["name"]}}}]


@dataclass(frozen=True)
class SandboxRulesetOptions:
    enabled: bool
    dns_port: int
    log_group: int
    log_rate: int
    log_burst: int
    gateway_port: int = 1017
    gateway_mark: int = 0x72756E74
    # "first": TCP 80/443 outside the sets goes to the gateway; "all": every TCP 80/443 flow.
    inspect: str = "first"


def build_sandbox_ruleset(template: dict[str, Any], options: SandboxRulesetOptions) -> list[Command]:
    """Render the sandbox table for enforcement on or off, as one transaction."""
    output_groups = ["output_head", "output_enforced" if options.enabled else "output_open"]
    values = {
        "dns_port": options.dns_port,
        "log_group": options.log_group,
        "log_rate": options.log_rate,
        "log_burst": options.log_burst,
        "gateway_port": options.gateway_port,
        "gateway_mark": options.gateway_mark,
    }
    gateway_groups = []
    if options.enabled:
        gateway_groups = ["gateway_redirect_all" if options.inspect == "all" else "gateway_redirect_first"]
    chain_rules = {
        "dns_redirect": ["dns_redirect"],
        "gateway_redirect": gateway_groups,
        "output": output_groups,
        "deny": ["deny"],
    }
    return build_table(template, chain_rules, values)


def build_host_ruleset(
    template: dict[str, Any], ipv4_pool: str, ipv6_pool: str, interface_glob: str
) -> list[Command]:
    """Render the daemon namespace's NAT and forwarding table as one transaction."""
    values = {
        "ipv4_pool": _prefix(ipv4_pool),
        "ipv6_pool": _prefix(ipv6_pool),
        "interface_glob": interface_glob,
    }
    chain_rules = {"postrouting": ["postrouting"], "forward": ["forward"]}
    return build_table(template, chain_rules, values)


def _prefix(network: str) -> dict[str, Any]:
    parsed = ipaddress.ip_network(network)
    return {"prefix": {"addr": str(parsed.network_address), "len": parsed.prefixlen}}


def set_name_for(address: str) -> str:
    return SET_IPV6 if ":" in address else SET_IPV4


def build_element_add(elements: Iterable[tuple[str, int]], *, refresh: bool) -> list[Command]:
    """Build commands that put (address, timeout seconds) elements in the allow sets.

    With refresh, each element is added, deleted and added again in the same
    transaction. That sets its timeout to the value given whether or not it existed
    (the add before the delete makes the delete valid for a missing element), on
    kernels where a plain add leaves an existing element's timeout unchanged.
    """
    commands: list[Command] = []
    by_set: dict[str, list[dict[str, Any]]] = {}
    addresses: dict[str, list[str]] = {}
    for address, timeout in elements:
        name = set_name_for(address)
        by_set.setdefault(name, []).append({"elem": {"val": address, "timeout": int(timeout)}})
        addresses.setdefault(name, []).append(address)
    for name, elems in by_set.items():
        target = {"family": "inet", "table": SANDBOX_TABLE, "name": name}
        commands.append({"add": {"element": {**target, "elem": elems}}})
        if refresh:
            commands.append({"delete": {"element": {**target, "elem": addresses[name]}}})
            commands.append({"add": {"element": {**target, "elem": elems}}})
    return commands


def build_element_delete(addresses: Iterable[str]) -> list[Command]:
    """Build commands that remove addresses from the allow sets.

    Each address is first added with a short timeout so that deleting one the kernel
    already expired does not fail the whole transaction.
    """
    by_set: dict[str, list[str]] = {}
    for address in addresses:
        by_set.setdefault(set_name_for(address), []).append(address)
    commands: list[Command] = []
    for name, values in by_set.items():
        target = {"family": "inet", "table": SANDBOX_TABLE, "name": name}
        placeholders = [{"elem": {"val": value, "timeout": 1}} for value in values]
        commands.append({"add": {"element": {**target, "elem": placeholders}}})
        commands.append({"delete": {"element": {**target, "elem": values}}})
    return commands


def parse_set_elements(output: list[dict[str, Any]]) -> dict[str, int]:
    """Return address → seconds until expiry from the output of build_set_list."""
    remaining: dict[str, int] = {}
    for item in output:
        spec = item.get("set")
        if not spec:
            continue
        for element in spec.get("elem", []):
            if isinstance(element, dict) and "elem" in element:
                inner = element["elem"]
                remaining[str(inner["val"])] = int(inner.get("expires", inner.get("timeout", 0)))
            else:
                remaining[str(element)] = 0
    return remaining
