"""nftables JSON builders: template rendering and set updates, without a kernel."""

from __future__ import annotations

import pytest

from runtad import ruleset
from runtad.ruleset import SandboxRulesetOptions


def rules_of(commands: list[dict], chain: str) -> list[list[dict]]:
    return [c["add"]["rule"]["expr"] for c in commands if "rule" in c.get("add", {}) and c["add"]["rule"]["chain"] == chain]


def options(enabled: bool) -> SandboxRulesetOptions:
    return SandboxRulesetOptions(enabled=enabled, dns_port=53, log_group=7, log_rate=200, log_burst=400)


def test_enforced_output_ends_in_deny() -> None:
    commands = ruleset.build_sandbox_ruleset(ruleset.load_template("sandbox.json"), options(True))
    output = rules_of(commands, "output")
    assert output[-1][-1] == {"goto": {"target": "deny"}}
    deny = rules_of(commands, "deny")
    assert {"reject": {"type": "tcp reset"}} in deny[0]
    assert {"reject": {"type": "icmpx", "expr": "admin-prohibited"}} in deny[1]


def test_open_output_accepts_everything() -> None:
    commands = ruleset.build_sandbox_ruleset(ruleset.load_template("sandbox.json"), options(False))
    output = rules_of(commands, "output")
    assert output[-1][-1] == {"accept": None}
    assert all({"goto": {"target": "deny"}} not in rule for rule in output)


def test_sets_added_never_flushed() -> None:
    commands = ruleset.build_sandbox_ruleset(ruleset.load_template("sandbox.json"), options(True))
    assert not any("set" in c.get("flush", {}) for c in commands)
    added = [c["add"]["set"]["name"] for c in commands if "set" in c.get("add", {})]
    assert added == ["allow4", "allow6"]


def test_chains_flushed_before_rules() -> None:
    commands = ruleset.build_sandbox_ruleset(ruleset.load_template("sandbox.json"), options(True))
    first_rule = next(i for i, c in enumerate(commands) if "rule" in c.get("add", {}))
    last_flush = max(i for i, c in enumerate(commands) if "flush" in c)
    assert last_flush < first_rule


def test_dns_redirect_to_listener_port() -> None:
    custom = SandboxRulesetOptions(enabled=True, dns_port=5353, log_group=7, log_rate=200, log_burst=400)
    commands = ruleset.build_sandbox_ruleset(ruleset.load_template("sandbox.json"), custom)
    assert {"redirect": {"port": 5353}} in rules_of(commands, "dns_redirect")[0]


def test_unknown_placeholder_raises() -> None:
    with pytest.raises(KeyError):
        ruleset.substitute({"a": "@missing@"}, {})


def test_set_reference_left_alone() -> None:
    assert ruleset.substitute({"right": "@allow4"}, {}) == {"right": "@allow4"}


def test_element_add_refresh_is_add_delete_add() -> None:
    commands = ruleset.build_element_add([("192.0.2.10", 300), ("2001:db8::10", 60)], refresh=True)
    verbs = [(next(iter(c)), c[next(iter(c))]["element"]["name"]) for c in commands]
    assert verbs == [("add", "allow4"), ("delete", "allow4"), ("add", "allow4"),
                     ("add", "allow6"), ("delete", "allow6"), ("add", "allow6")]
    assert commands[0]["add"]["element"]["elem"] == [{"elem": {"val": "192.0.2.10", "timeout": 300}}]


def test_element_delete_adds_first() -> None:
    commands = ruleset.build_element_delete(["192.0.2.10"])
    assert list(commands[0]) == ["add"]
    assert list(commands[1]) == ["delete"]


def test_parse_set_elements_reads_expiry() -> None:
    output = [{"set": {"name": "allow4", "elem": [{"elem": {"val": "192.0.2.10", "timeout": 300, "expires": 120}}]}},
              {"table": {"name": "runta"}}]
    assert ruleset.parse_set_elements(output) == {"192.0.2.10": 120}


def test_host_ruleset_masquerades_pools() -> None:
    commands = ruleset.build_host_ruleset(ruleset.load_template("host.json"), "10.213.0.0/16", "fd72:756e:7461::/48", "rth*")
    postrouting = rules_of(commands, "postrouting")
    assert postrouting[0][0]["match"]["right"] == {"prefix": {"addr": "10.213.0.0", "len": 16}}
    assert {"masquerade": None} in postrouting[1]


def gateway_options(enabled: bool, inspect: str) -> SandboxRulesetOptions:
    return SandboxRulesetOptions(
        enabled=enabled, dns_port=53, log_group=7, log_rate=200, log_burst=400,
        gateway_port=1017, gateway_mark=0x72756E74, inspect=inspect,
    )  # fmt: skip


def gateway_rules(enabled: bool, inspect: str) -> list[list[dict]]:
    template = ruleset.load_template("sandbox.json")
    return rules_of(ruleset.build_sandbox_ruleset(template, gateway_options(enabled, inspect)), "gateway_redirect")


def test_gateway_redirects_outside_sets() -> None:
    rules = gateway_rules(True, "first")
    assert len(rules) == 2
    sets = [expr["match"]["right"] for rule in rules for expr in rule if expr.get("match", {}).get("op") == "!=" and expr["match"]["right"] in ("@allow4", "@allow6")]
    assert sets == ["@allow4", "@allow6"]
    assert all(rule[-1] == {"redirect": {"port": 1017}} for rule in rules)


def test_gateway_redirect_skips_marked_and_loopback() -> None:
    for rule in gateway_rules(True, "first") + gateway_rules(True, "all"):
        assert {"match": {"op": "!=", "left": {"meta": {"key": "mark"}}, "right": 0x72756E74}} in rule
        assert {"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": "lo"}} in rule


def test_gateway_strict_redirects_every_flow() -> None:
    rules = gateway_rules(True, "all")
    assert len(rules) == 1
    assert "@allow4" not in str(rules)
    assert {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": {"set": [80, 443]}}} in rules[0]


def test_gateway_off_without_enforcement() -> None:
    assert gateway_rules(False, "first") == []
    assert gateway_rules(False, "all") == []


def test_gateway_marked_packets_accepted_first() -> None:
    commands = ruleset.build_sandbox_ruleset(ruleset.load_template("sandbox.json"), gateway_options(True, "all"))
    output = rules_of(commands, "output")
    assert output[0] == [
        {"match": {"op": "==", "left": {"meta": {"key": "mark"}}, "right": 0x72756E74}},
        {"accept": None},
    ]
