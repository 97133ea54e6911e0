"""The sandbox ruleset that kernelstart renders once per template and options."""

from __future__ import annotations

from runtad import ruleset
from runtad.kernelstart import sandbox_ruleset

OPTIONS = ruleset.SandboxRulesetOptions(enabled=True, dns_port=53053, log_group=7, log_rate=10, log_burst=5)
OPEN = ruleset.SandboxRulesetOptions(enabled=False, dns_port=53053, log_group=7, log_rate=10, log_burst=5)


def template() -> dict:
    return ruleset.load_template(ruleset.SANDBOX_TEMPLATE)


def test_ruleset_matches_render() -> None:
    loaded = template()
    assert sandbox_ruleset(loaded, OPTIONS) == ruleset.build_sandbox_ruleset(loaded, OPTIONS)


def test_ruleset_rendered_once() -> None:
    loaded = template()
    assert sandbox_ruleset(loaded, OPTIONS) is sandbox_ruleset(loaded, OPTIONS)


def test_ruleset_per_options() -> None:
    loaded = template()
    assert sandbox_ruleset(loaded, OPEN) == ruleset.build_sandbox_ruleset(loaded, OPEN)
    assert sandbox_ruleset(loaded, OPEN) != sandbox_ruleset(loaded, OPTIONS)


def test_ruleset_per_template() -> None:
    first = template()
    second = template()
    assert sandbox_ruleset(first, OPTIONS) is not sandbox_ruleset(second, OPTIONS)
