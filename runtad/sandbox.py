"""One sandbox's live enforcement: its policy, kernel table, allow sets, DNS and gateway."""

from __future__ import annotations

import asyncio
import functools
import math
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import structlog

from . import ruleset
from .addressbook import AddressBook, Learned
from .answerfilter import AnswerFilter
from .audit import Action, AuditService, PolicyView, Reason, Recorder, Source
from .audit.collector import Collector
from .audit.gateway_events import record_gateway_decision
from .config import Config
from .conntrack import end_denied_flows
from .dnslimit import QueryLimiter
from .dnsproxy import DnsProxy, SetUpdateFailed, Verdict
from .errors import KernelApplyError
from .gateway import GatewayListener, GatewayOptions
from .gateway.addresscache import NameAddressCache
from .hosts import HostMatcher, HostRule, canonical_name
from .kernelstart import sandbox_ruleset, start_in_netns
from .nft import Command, NftContext, NftError
from .nftpool import POOL, NftPool, PooledNft
from .resolver import resolve_host, resolve_in_batches
from .setwriter import SetWriter, SetWriterClosed
from .store import PolicyRecord, RuntimeRecord
from .upstream import Upstream

log = structlog.get_logger()


@dataclass
class HostStatus:
    """Resolution state of one exact host."""

    error: str | None = None
    resolved_at: float | None = None
    next_attempt: float = 0.0
    failures: int = 0
    ttl: int = 0


class Sandbox:
    def __init__(
        self, record: RuntimeRecord, policy: PolicyRecord, rules: list[HostRule],
        config: Config, upstream: Upstream, template: dict, audit: AuditService | None = None,
        answer_filter: AnswerFilter | None = None, nft_pool: NftPool | None = None,
        refresh_gate: asyncio.Event | None = None,
    ) -> None:
        self.record = record
        self.name = record.name
        self.netns_path = Path(record.netns)
        self.netns_inode: int | None = None
        self.policy = policy
        self.rules = rules
        self.matcher = HostMatcher(rules)
        self.config = config
        self.upstream = upstream
        self.template = template
        self.book = AddressBook()
        # A repeated answer may leave an element up to half the grace short of TTL plus
        # grace, so it still outlives the TTL the client got by at least half the grace.
        self.writer = SetWriter(self.name, self.book, self._run, slack=config.ttl_grace / 2)
        self.answer_filter = answer_filter or AnswerFilter(config.denied_answer_networks)
        self.statuses: dict[str, HostStatus] = {}
        self.lock = asyncio.Lock()
        self.nft_pool = nft_pool or POOL
        self.nft: PooledNft | None = None
        self.proxy: DnsProxy | None = None
        self.gateway: GatewayListener | None = None
        self.gateway_addresses = NameAddressCache(
            functools.partial(resolve_host, upstream), min_ttl=config.min_ttl, max_ttl=config.max_ttl
        )
        self._refresher: asyncio.Task[None] | None = None
        # Set once every stored sandbox is reconciled (Manager.reconcile_all).
        self.refresh_gate = refresh_gate
        # Seconds left of the earliest element the start found in the sets, if any.
        self._restored_lifetime: float | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._log = log.bind(runtime=self.name)
        view = PolicyView(
            rule_for=lambda host: self.judge(host).pattern,
            patterns=lambda: self.policy.hosts,
            enforced=lambda: self.policy.enabled,
        )
        self.audit = audit.recorder(self.name, view) if audit is not None else Recorder.discarding(self.name)
        self.collector: Collector | None = None

    # --- start and stop -------------------------------------------------------------

    async def start(self) -> None:
        """Bring the kernel to the stored policy, then serve DNS and keep hosts resolved.

        The ruleset goes in before the DNS listener opens, so no query is ever answered
        by a sandbox whose policy is not in the kernel.
        """
        self.netns_inode = os.stat(self.netns_path).st_ino
        # A handle, not a context: the pool opens this namespace's context when a batch needs it.
        self.nft = self.nft_pool.handle(self.netns_path, self.netns_inode)
        commands = self.ruleset_commands(self.policy.enabled, self.policy.inspect)
        try:
            kernel = await self.nft.call_in_netns(
                functools.partial(
                    start_in_netns, netns_path=self.netns_path, ruleset_commands=commands,
                    log_group=self.config.log_group,
                )
            )
        except NftError as error:
            raise KernelApplyError(self.name, error.detail) from error
        remaining = kernel.remaining
        self.book.load_from_kernel(remaining, self._owner_of_restored)
        # After a restart the sets still contain what the previous runtad learned, so the
        # first lookups are spread over at most retry_max seconds, and half the earliest
        # expiry. Otherwise every host of every sandbox is asked at once, and the flood of
        # lookups and their retries keeps the reconcile of 1,000 sandboxes from finishing.
        lifetimes = [seconds for seconds in remaining.values() if seconds > 0]
        if lifetimes:
            self._restored_lifetime = min(lifetimes)
            window = min(self.config.retry_max, min(lifetimes) / 2)
            now = time.time()
            for rule in self.rules:
                if rule.kind == "exact":
                    first_attempt = now + random.uniform(0, window)
                    self.statuses.setdefault(rule.pattern, HostStatus()).next_attempt = first_attempt
        if kernel.generation_reader is not None:
            self.writer.watch_generation(kernel.generation_reader)
        else:
            # Still correct without it: the writer then adds covered addresses again each time.
            self._log.warning("nft_generation_reader_failed", error=str(kernel.generation_error))
        # Collector.start logs NFLOG faults and retries instead of raising, so a broken
        # audit path does not keep the sandbox from being enforced.
        # NOTE: Collector's parameter is typed NftContext, but it only calls run_async,
        # which the pooled handle has too.
        self.collector = Collector(
            self.audit, self.netns_path, self.config.log_group, cast(NftContext, self.nft)
        )
        await self.collector.start(kernel.log)
        limiter = QueryLimiter(self.config.dns_rate, self.config.dns_burst, self.config.dns_max_pending)
        self.proxy = DnsProxy(
            self, self.upstream, self.netns_path, self.config.dns_listen_port, audit=self.audit,
            limiter=limiter,
        )
        await self.proxy.start()
        options = GatewayOptions(
            port=self.config.gateway_port,
            mark=self.config.gateway_mark,
            first_flight_timeout=self.config.gateway_first_flight_timeout,
            idle_timeout=self.config.gateway_idle_timeout,
            max_connections=self.config.gateway_max_connections,
        )
        self.gateway = GatewayListener(
            SandboxGatewayPolicy(self), self.netns_path, options,
            functools.partial(record_gateway_decision, self.audit),
        )
        await self.gateway.start()
        self._refresher = asyncio.get_running_loop().create_task(self._refresh_loop())

    async def stop(self) -> None:
        """Stop serving; the kernel keeps enforcing what it holds."""
        # The flag ends the loop even if a library swallows the cancellation.
        self._stopping = True
        self._wake.set()
        if self._refresher is not None:
            self._refresher.cancel()
            try:
                await self._refresher
            except asyncio.CancelledError:
                pass
        if self.proxy is not None:
            await self.proxy.close()
        if self.gateway is not None:
            await self.gateway.close()
        await self.writer.close()
        if self.collector is not None:
            await self.collector.stop()
        if self.nft is not None:
            self.nft.release()

    def ruleset_commands(self, enabled: bool, inspect: str) -> list[Command]:
        options = ruleset.SandboxRulesetOptions(
            enabled=enabled,
            dns_port=self.config.dns_listen_port,
            log_group=self.config.log_group,
            log_rate=self.config.log_rate,
            log_burst=self.config.log_burst,
            gateway_port=self.config.gateway_port,
            gateway_mark=self.config.gateway_mark,
            inspect=inspect,
        )
        return sandbox_ruleset(self.template, options)

    def teardown_commands(self) -> list[Command]:
        return ruleset.build_table_delete(self.template)

    async def _run(self, commands: list[Command]) -> list[dict]:
        assert self.nft is not None
        try:
            return await self.nft.run_async(commands)
        except NftError as error:
            raise KernelApplyError(self.name, error.detail) from error

    # --- policy -------------------------------------------------------------------

    def judge(self, qname_text: str) -> Verdict:
        host = canonical_name(qname_text)
        rule = self.matcher.match(host) if host is not None else None
        pattern = rule.pattern if rule is not None else None
        enforced = self.policy.enabled
        return Verdict(allowed=pattern is not None or not enforced, enforced=enforced, pattern=pattern, host=host)

    async def apply_kernel_change(self, enabled: bool, inspect: str, removed: set[str]) -> list[str]:
        """Change the ruleset and drop the addresses of removed rules, in one transaction.

        Returns the addresses deleted; the caller commits them with commit_removed once
        the store holds the new policy.
        """
        commands: list[Command] = []
        if enabled != self.policy.enabled or inspect != self.policy.inspect:
            commands.extend(self.ruleset_commands(enabled, inspect))
        orphans: list[str] = []
        if removed:
            delete_commands, orphans = self.book.plan_remove_patterns(removed)
            commands.extend(delete_commands)
        if commands:
            await self._run(commands)
        return orphans

    async def revert_ruleset(self) -> None:
        await self._run(self.ruleset_commands(self.policy.enabled, self.policy.inspect))

    async def restore_addresses(self, addresses: list[str]) -> None:
        """Put addresses back in the sets with the expiry the address book still holds."""
        remaining = self.book.remaining_seconds(addresses)
        if remaining:
            await self._run(ruleset.build_element_add(remaining, refresh=True))

    def adopt_policy(self, policy: PolicyRecord, rules: list[HostRule], removed: set[str], orphans: list[str]) -> None:
        self.policy = policy
        self.rules = rules
        self.matcher = HostMatcher(rules)
        self.book.commit_remove_patterns(removed, orphans)
        for pattern in removed:
            self.statuses.pop(pattern, None)
        self._wake.set()

    async def resolve_new_hosts(self, hosts: list[str]) -> None:
        """Resolve newly allowed exact hosts, waiting at most config.resolve_wait."""
        exact = [host for host in hosts if not host.startswith("*.")]
        if not exact:
            return
        # Not due for the refresher while this lookup runs, so each host is asked once.
        for host in exact:
            self.statuses.setdefault(host, HostStatus()).next_attempt = math.inf
        task = asyncio.ensure_future(self._resolve_first(exact))
        done, _ = await asyncio.wait([task], timeout=self.config.resolve_wait)
        if done:
            task.result()
        else:
            # Hosts still resolving finish in the background and land in the sets then.
            task.add_done_callback(_log_task_failure)

    async def end_denied_flows(self) -> int:
        """End flows that the current policy no longer allows."""
        if not self.policy.enabled:
            return 0
        allowed = frozenset(self.book.live_addresses())
        ended = await asyncio.to_thread(end_denied_flows, self.netns_path, allowed)
        if self.gateway is not None:
            ended += self.gateway.end_denied_relays()
        if ended:
            self._log.info("flows_ended", count=ended, reason="policy_tightened")
            self.audit.emit(Action.DENY, Reason.FLOW_REVOKED, Source.DAEMON, count=ended)
        return ended

    # --- addresses -----------------------------------------------------------------

    async def learn(self, learned: list[Learned]) -> None:
        """Return once the sets contain learned. Concurrent calls share one transaction."""
        await self.writer.learn(learned)

    async def learn_from_dns(self, pattern: str, addresses: list[tuple[str, int]]) -> None:
        grace = self.config.ttl_grace
        learned = [Learned(address, ttl + grace, pattern, "dns") for address, ttl in addresses]
        try:
            await self.learn(learned)
        except (KernelApplyError, SetWriterClosed) as error:
            raise SetUpdateFailed(str(error)) from error

    def is_denied_answer(self, address: str) -> bool:
        return self.answer_filter.is_denied(address)

    async def learn_from_sni(self, pattern: str, address: str, ttl: int) -> None:
        """Allow address for pattern after the gateway saw an allowed name connect to it."""
        await self.learn([Learned(address, ttl + self.config.ttl_grace, pattern, "sni")])

    def _owner_of_restored(self, address: str) -> str | None:
        # NOTE: after a restart, runtad does not know which rule an element found in the
        # kernel belongs to until a lookup or DNS answer names it again. Removing a rule
        # before that leaves such elements in the set until their kernel timeout.
        return None

    async def _resolve_first(self, hosts: list[str]) -> None:
        try:
            await self._resolve_and_learn(hosts)
        except BaseException:
            # Hand the hosts not done yet back to the refresher's retry schedule, then
            # report the failure. A done host has a finite next_attempt.
            retry_at = time.time() + self.config.retry_min
            for host in hosts:
                status = self.statuses.get(host)
                if status is not None and status.next_attempt == math.inf:
                    status.next_attempt = retry_at
            raise

    async def _resolve_and_learn(self, hosts: list[str]) -> None:
        """Resolve hosts upstream and put their addresses in the sets, one transaction per batch.

        A host's status changes only after the kernel contains its addresses, so on a failed
        transaction the hosts of that batch keep the status they had.
        """
        async for resolutions in resolve_in_batches(self.upstream, hosts):
            now = time.time()
            learned: list[Learned] = []
            resolved: list[tuple[str, tuple[tuple[str, int], ...], int]] = []
            for resolution in resolutions:
                host = resolution.host
                rule = self.matcher.match(host)
                if rule is None or rule.pattern != host:
                    continue  # removed from the policy while it was being resolved
                status = self.statuses.setdefault(host, HostStatus())
                if not resolution.ok:
                    status.failures += 1
                    status.error = resolution.error
                    delay = min(self.config.retry_max, self.config.retry_min * 2 ** (status.failures - 1))
                    status.next_attempt = now + delay
                    self._log.warning("host_unresolved", host=host, error=resolution.error, retry_in=delay)
                    continue
                permitted = [(address, ttl) for address, ttl in resolution.addresses if not self.is_denied_answer(address)]
                if not permitted:
                    status.error = "every address of the answer is in denied_answer_networks or the host's own"
                    status.next_attempt = now + self.config.retry_max
                    self._log.warning("host_answer_denied", host=host, addresses=[a for a, _ in resolution.addresses])
                    continue
                ttl = min(max(min(ttl for _, ttl in permitted), self.config.min_ttl), self.config.max_ttl)
                learned.extend(Learned(address, ttl + self.config.ttl_grace, host, "resolver") for address, _ in permitted)
                resolved.append((host, tuple(permitted), ttl))

            if learned:
                await self.learn(learned)
            for host, answer, ttl in resolved:
                self.audit.learn_names(host, answer)
                status = self.statuses.setdefault(host, HostStatus())
                status.failures = 0
                status.error = None
                status.resolved_at = now
                status.ttl = ttl
                # Refresh well before expiry so the set never lapses between lookups.
                status.next_attempt = now + max(1.0, ttl * 0.8)

    async def _hold_until_reconciled(self) -> None:
        """Keep a restored sandbox's first lookups out of the reconcile, then move their schedule past it.

        The sets still contain what the previous runtad learned, so waiting denies nothing
        while the earliest of those elements lives. The wait ends at a quarter of its
        lifetime at the latest, and lookups spread over at most half of it then still come
        before it expires.
        """
        gate = self.refresh_gate
        if gate is None or gate.is_set() or self._restored_lifetime is None:
            return
        began = time.time()
        waiting = asyncio.ensure_future(gate.wait())
        try:
            await asyncio.wait([waiting], timeout=self._restored_lifetime / 4)
        finally:
            waiting.cancel()
        waited = time.time() - began
        for status in self.statuses.values():
            if status.next_attempt != math.inf:
                status.next_attempt += waited

    async def _refresh_loop(self) -> None:
        await self._hold_until_reconciled()
        while not self._stopping:
            now = time.time()
            due = [
                rule.pattern for rule in self.rules
                if rule.kind == "exact" and self.statuses.get(rule.pattern, HostStatus()).next_attempt <= now
            ]
            if due:
                try:
                    await self._resolve_and_learn(due)
                except KernelApplyError as error:
                    # The hosts not done when the transaction failed are still due: retry them.
                    pending = [host for host in due if self.statuses.setdefault(host, HostStatus()).next_attempt <= now]
                    self._log.error("set_update_failed", hosts=pending[:5], host_count=len(pending), error=str(error))
                    for host in pending:
                        self.statuses[host].next_attempt = now + self.config.retry_min
            self.book.prune()
            next_times = [
                self.statuses[rule.pattern].next_attempt for rule in self.rules
                if rule.kind == "exact" and rule.pattern in self.statuses
            ]
            delay = min([5.0] + [max(0.05, t - time.time()) for t in next_times])
            await self._sleep_until_woken(delay)

    async def _sleep_until_woken(self, delay: float) -> None:
        """Return after delay seconds, or sooner once adopt_policy sets the wake event.

        A timer sets the event, rather than asyncio.wait_for around the wait: stop() could
        hang when its cancel met wait_for's timeout (seen on CPython 3.11.7: the refresher
        stayed "cancelling" for good and DELETE never returned).
        """
        self._wake.clear()
        timer = asyncio.get_running_loop().call_later(delay, self._wake.set)
        try:
            await self._wake.wait()
        finally:
            timer.cancel()

    # --- views ----------------------------------------------------------------------

    def entries(self) -> list[dict]:
        owned = self.book.addresses_by_owner()
        # The elements of one set write share an expiry, so most timestamps repeat.
        timestamps: dict[float, str] = {}
        rows = []
        for rule in self.rules:
            addresses = []
            for address, expires_at, source in owned.get(rule.pattern, ()):
                timestamp = timestamps.get(expires_at)
                if timestamp is None:
                    timestamp = timestamps[expires_at] = _iso(expires_at)
                addresses.append({"address": address, "expires_at": timestamp, "source": source})
            status = self.statuses.get(rule.pattern)
            if rule.kind == "wildcard":
                state = "wildcard"
            elif addresses:
                state = "resolved"
            else:
                state = "unresolved"
            row = {"host": rule.pattern, "kind": rule.kind, "status": state, "addresses": addresses}
            if state == "unresolved" and status is not None and status.error:
                row["error"] = status.error
            rows.append(row)
        return rows


class SandboxGatewayPolicy:
    """Adapter that exposes the sandbox to its gateway listener (runtad.gateway.GatewayPolicy)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.name = sandbox.name

    @property
    def enforced(self) -> bool:
        return self.sandbox.policy.enabled

    @property
    def inspect(self) -> str:
        return self.sandbox.policy.inspect

    def judge(self, host: str) -> str | None:
        rule = self.sandbox.matcher.match(host)
        return rule.pattern if rule is not None else None

    async def addresses_for(self, host: str, *, fresh: bool = False) -> Mapping[str, int]:
        found = await self.sandbox.gateway_addresses.addresses_for(host, fresh=fresh)
        return {address: ttl for address, ttl in found.items() if not self.sandbox.is_denied_answer(address)}

    async def learn_sni(self, pattern: str, address: str, ttl: int) -> None:
        await self.sandbox.learn_from_sni(pattern, address, ttl)

    def is_allowed_address(self, address: str) -> bool:
        return self.sandbox.book.is_allowed(address)


def _iso(timestamp: float) -> str:
    """Format a Unix time as RFC 3339 UTC with milliseconds, such as 2026-01-02T03:04:05.678Z."""
    micros = round(timestamp * 1_000_000)
    seconds, micros = divmod(micros, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micros // 1000:03d}Z"


def _log_task_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("resolve_failed", error=str(task.exception()))
