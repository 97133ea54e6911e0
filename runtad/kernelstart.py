"""The kernel half of a sandbox's start, done in one pass inside its network namespace.

Applying the ruleset, listing the allow sets, turning off loose TCP pick-up, opening
the generation reader, and reading the log counters and binding the NFLOG group for the
audit collector each need the sandbox's namespace or its nftables context. Run as one
call on a pool thread (NftPool.call_in_netns), they cost one thread hand-off and one
namespace switch instead of six, and neither listing runs on the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import ruleset
from .audit.collector import PreparedLog, prepare_in_netns
from .conntrack import disable_loose_pickup
from .nft import Command, NftContext
from .nftgen import GenerationReader

# Rendered sandbox rulesets by template identity and options, each with its template so
# that the identity stays that template's. A daemon uses a handful of option sets.
_RULESETS: dict[tuple[int, ruleset.SandboxRulesetOptions], tuple[dict[str, Any], list[Command]]] = {}
RULESETS_KEPT = 16


def sandbox_ruleset(template: dict[str, Any], options: ruleset.SandboxRulesetOptions) -> list[Command]:
    """Return the sandbox ruleset for options, rendered once per template and options.

    Rendering took 0.7 ms per sandbox, a fifth of the event loop's work in a restart of
    300 sandboxes, which share a few option sets. Callers share the returned list and its
    commands, so they must not change them: copy the list to add commands.
    """
    key = (id(template), options)
    cached = _RULESETS.get(key)
    if cached is not None and cached[0] is template:
        return cached[1]
    commands = ruleset.build_sandbox_ruleset(template, options)
    if len(_RULESETS) >= RULESETS_KEPT:
        _RULESETS.clear()
    _RULESETS[key] = (template, commands)
    return commands


@dataclass
class KernelStart:
    """The allow set elements a sandbox's start found in its namespace, and the generation reader it opened there."""

    # Address → seconds until expiry of every element in the allow sets, after the ruleset.
    remaining: dict[str, int]
    generation_reader: GenerationReader | None
    # Why the generation reader could not be opened, when it could not.
    generation_error: OSError | None = None
    # The audit collector's counters and NFLOG socket, when a log group was given.
    log: PreparedLog | None = None


def build_set_list(name: str) -> list[Command]:
    """Build the listing of one allow set of the sandbox table.

    Listing a set makes libnftables fetch only that set, where listing the table fetches
    and renders every chain and rule too. Both sets took 0.22 ms, the table 0.59 ms
    (medians of 300 listings of a sandbox table with 21 elements, libnftables 1.0.6 on a
    shared 2-CPU machine). libnftables 1.0.6 rejects two "list set" commands in one
    document, so each set takes a batch of its own.
    """
    return [{"list": {"set": {"family": "inet", "table": ruleset.SANDBOX_TABLE, "name": name}}}]


def start_in_netns(
    context: NftContext, netns_path: Path, ruleset_commands: list[Command], log_group: int | None = None
) -> KernelStart:
    """Apply the ruleset, list the allow sets and prepare conntrack, on a thread inside the namespace.

    With log_group, also read the log counters and bind that NFLOG group for the audit
    collector (Collector.start takes the result). Raises NftError when libnftables
    rejects the ruleset or the listing. The ruleset transaction adds sets without
    flushing them, so the listing shows every element the previous runtad left.
    """
    context.run(ruleset_commands)
    remaining: dict[str, int] = {}
    for name in (ruleset.SET_IPV4, ruleset.SET_IPV6):
        remaining.update(ruleset.parse_set_elements(context.run(build_set_list(name))))
    # Both calls name the namespace this thread is in, so call_in_netns runs them here.
    disable_loose_pickup(netns_path)
    started = KernelStart(remaining, None)
    try:
        started.generation_reader = GenerationReader.open(netns_path)
    except OSError as error:
        started.generation_error = error
    if log_group is not None:
        started.log = prepare_in_netns(context, log_group)
    return started
