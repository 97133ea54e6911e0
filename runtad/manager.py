"""The daemon's sandboxes: create, adopt, delete, reconcile, and all-or-nothing policy writes."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
import structlog

from . import ruleset, sandboxes
from .answerfilter import AnswerFilter, host_addresses
from .audit import Action, AuditService, Reason, Source
from .config import Config
from .errors import InvalidRequestError, InvalidNameError, NetnsNotFoundError, NotFoundError, RuntadError, VersionConflictError
from .heartbeat import Downtime
from .hosts import HostRule, parse_rule, parse_rules
from .lowfds import RESERVE
from .netns import netns_exists, resolve_netns_path
from .nft import NftContext, NftError
from .sandbox import Sandbox
from .store import PolicyRecord, RuntimeRecord, Store, utc_now_text
from .upstream import Upstream

log = structlog.get_logger()

# Sandboxes started at once by reconcile_all. Each start uses an nftables context of the
# bounded pool (nftpool.py) for a few transactions. Starting a thousand at once would
# close and reopen contexts over and over.
RECONCILE_CONCURRENCY = 32
# Seconds between reads of the host's own addresses for the DNS rebinding filter.
HOST_ADDRESS_INTERVAL = 10.0

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,30}")


@dataclass(frozen=True)
class FailedSandbox:
    """A stored sandbox that could not be started; its kernel state is as it was left."""

    record: RuntimeRecord
    error: str


class SandboxUnavailableError(RuntadError):
    code = "sandbox_unavailable"
    status = 503

    def __init__(self, runtime: str, error: str) -> None:
        super().__init__(
            f"sandbox {runtime!r} failed to start: {error}; fix the cause and restart runtad,"
            f" or delete it with 'runta sandbox delete {runtime}'"
        )
        self.runtime = runtime


@dataclass(frozen=True)
class PolicyChange:
    """A requested policy change: the fields a write sets, None for those it leaves."""

    enabled: bool | None = None
    # Gateway inspection mode, "first" or "all" (see runtad.gateway.decision).
    inspect: str | None = None
    replace_hosts: list[str] | None = None
    add_hosts: list[str] | None = None
    remove_hosts: list[str] | None = None
    # Allow wildcards directly on a public suffix (*.com) among the hosts given here.
    force: bool = False


class Manager:
    def __init__(
        self, config: Config, store: Store, upstream: Upstream, audit: AuditService | None = None
    ) -> None:
        self.config = config
        self.audit = audit
        self.store = store
        self.upstream = upstream
        self.sandboxes: dict[str, Sandbox] = {}
        self.template = ruleset.load_template(ruleset.SANDBOX_TEMPLATE)
        self.answer_filter = AnswerFilter(config.denied_answer_networks)
        self.host_template = ruleset.load_template(ruleset.HOST_TEMPLATE)
        self._create_lock = asyncio.Lock()
        self.last_reconcile: str | None = None
        self.failed: dict[str, FailedSandbox] = {}
        # Restored sandboxes start their lookups once this is set, after reconcile_all.
        self.refresh_gate = asyncio.Event()
        self._host_address_watch: asyncio.Task[None] | None = None

    # --- start and stop -------------------------------------------------------------

    async def reconcile_all(self) -> None:
        """Bring every stored sandbox's namespace and kernel state to the store."""
        if self.config.deny_host_answers:
            pools = [self.config.ipv4_pool, self.config.ipv6_pool]
            self.answer_filter.extend(pools, await asyncio.to_thread(host_addresses))
            if self._host_address_watch is None:
                self._host_address_watch = asyncio.get_running_loop().create_task(self._watch_host_addresses())
        await self._apply_host_table()
        records = await self.store.call(self.store.list_runtimes)
        # One store call for every policy, and one parse per distinct host list: sandboxes
        # often share their allowlist, and each start would otherwise wait for the store's
        # thread and parse its hosts again.
        policies = await self.store.call(lambda: {record.id: self.store.get_policy(record.id) for record in records})
        parsed: dict[tuple[str, ...], list[HostRule]] = {}
        starting = asyncio.Semaphore(RECONCILE_CONCURRENCY)

        async def start(record: RuntimeRecord) -> Sandbox:
            policy = policies[record.id]
            if policy.hosts not in parsed:
                parsed[policy.hosts] = parse_rules(policy.hosts, force=True)
            async with starting:
                return await self._start_sandbox(record, policy, list(parsed[policy.hosts]))

        results = await asyncio.gather(*(start(record) for record in records), return_exceptions=True)
        for record, result in zip(records, results):
            if isinstance(result, BaseException):
                # Kept visible, so the API can show why and the operator can delete it.
                self.failed[record.name] = FailedSandbox(record, str(result))
                log.error("sandbox_reconcile_failed", runtime=record.name, error=str(result))
            else:
                self.failed.pop(record.name, None)
        self.last_reconcile = utc_now_text()
        self.refresh_gate.set()
        log.info("reconciled", runtimes=len(records), failed=sum(isinstance(r, BaseException) for r in results))

    def record_downtime(self, downtime: Downtime) -> None:
        """Record, for every sandbox, the interval in which runtad was not running."""
        log.info("downtime_recorded", seconds=round(downtime.seconds, 1), clean=downtime.clean)
        for sandbox in self.sandboxes.values():
            sandbox.audit.emit(
                Action.DENY, Reason.DAEMON_DOWN, Source.DAEMON, error=downtime.describe(), when=downtime.since
            )

    async def shutdown(self) -> None:
        if self._host_address_watch is not None:
            self._host_address_watch.cancel()
        await asyncio.gather(*(sandbox.stop() for sandbox in self.sandboxes.values()))

    async def _watch_host_addresses(self) -> None:
        """Deny, in DNS answers, addresses the host gains after start (a new bridge, a VPN).

        The host's addresses are read again every HOST_ADDRESS_INTERVAL seconds. An address
        the host loses stays denied, which only ever denies more.
        """
        while True:
            await asyncio.sleep(HOST_ADDRESS_INTERVAL)
            try:
                added = self.answer_filter.add_addresses(await asyncio.to_thread(host_addresses))
            except Exception as error:  # noqa: BLE001 - logged; the next turn reads again
                log.error("host_addresses_read_failed", error=str(error))
                continue
            if added:
                log.info("host_addresses_denied_in_answers", addresses=added)

    async def _apply_host_table(self) -> None:
        commands = ruleset.build_host_ruleset(
            self.host_template, self.config.ipv4_pool, self.config.ipv6_pool, sandboxes.HOST_INTERFACE_GLOB
        )
        context = await asyncio.to_thread(NftContext.open, None)
        await context.run_async(commands)

    async def _start_sandbox(
        self, record: RuntimeRecord, policy: PolicyRecord | None = None, rules: list[HostRule] | None = None
    ) -> Sandbox:
        """Start a stored sandbox. Its policy and rules come from the store unless given."""
        if not record.adopted and record.slot is not None:
            netns_name = self._netns_name(record.name)
            # A few system calls on the event loop when intact, as after every clean restart.
            # Only a repair goes to a thread.
            if not sandboxes.is_created(netns_name, record.slot):
                addresses = self._addresses(record.slot)
                repaired = await asyncio.to_thread(sandboxes.ensure_created, netns_name, record.slot, addresses)
                if repaired:
                    log.warning("sandbox_netns_recreated", runtime=record.name, netns=record.netns)
        elif not netns_exists(resolve_netns_path(record.netns)):
            raise NetnsNotFoundError(record.netns)
        else:
            await asyncio.to_thread(sandboxes.prepare_adopted, resolve_netns_path(record.netns))
        if policy is None:
            policy = await self.store.call(self.store.get_policy, record.id)
        if rules is None:
            rules = parse_rules(policy.hosts, force=True)
        sandbox = Sandbox(
            record, policy, rules, self.config, self.upstream, self.template, self.audit,
            answer_filter=self.answer_filter, refresh_gate=self.refresh_gate,
        )
        await sandbox.start()
        self.sandboxes[record.name] = sandbox
        return sandbox

    # --- runtimes -----------------------------------------------------------------

    def sandbox_of_netns(self, inode: int) -> str | None:
        """Return the name of the running sandbox whose namespace has this nsfs inode."""
        for name, sandbox in self.sandboxes.items():
            if sandbox.netns_inode == inode:
                return name
        return None

    def get(self, name: str) -> Sandbox:
        sandbox = self.sandboxes.get(name)
        if sandbox is None:
            failed = self.failed.get(name)
            if failed is not None:
                raise SandboxUnavailableError(name, failed.error)
            raise NotFoundError(name)
        return sandbox

    async def create(self, name: str, netns: str | None) -> Sandbox:
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise InvalidNameError(str(name))
        async with self._create_lock:
            if name in self.sandboxes:
                from .errors import AlreadyExistsError

                raise AlreadyExistsError(name)
            if netns is not None:
                path = resolve_netns_path(netns)
                if not netns_exists(path):
                    raise NetnsNotFoundError(netns)
                record = await self.store.call(self.store.create_runtime, name, str(path), True, None, None)
            else:
                used = await self.store.call(self.store.used_slots)
                slot = sandboxes.free_slot(used, self.config.ipv4_pool, self.config.ipv6_pool)
                netns_name = self._netns_name(name)
                if netns_exists(sandboxes.netns_path_for(netns_name)):
                    raise InvalidRequestError(
                        f"network namespace {netns_name!r} already exists but is not runtad's:"
                        f" adopt it with 'runta sandbox create {name} --netns {netns_name}'"
                        " or delete it with 'ip netns del'",
                        field="name",
                    )
                addresses = self._addresses(slot)
                await asyncio.to_thread(sandboxes.create_sandbox_netns, netns_name, slot, addresses)
                try:
                    record = await self.store.call(
                        self.store.create_runtime, name, str(sandboxes.netns_path_for(netns_name)),
                        False, slot, sandboxes.host_interface_name(slot),
                    )
                except BaseException:
                    await asyncio.to_thread(sandboxes.delete_created, netns_name, slot)
                    raise
            try:
                sandbox = await self._start_sandbox(record)
            except BaseException:
                await self._remove(record)
                raise
            log.info("sandbox_created", runtime=name, netns=record.netns, adopted=record.adopted)
            return sandbox

    async def delete(self, name: str) -> None:
        failed = self.failed.get(name)
        if failed is not None and name not in self.sandboxes:
            await self._remove(failed.record)
            self.failed.pop(name, None)
            log.info("sandbox_deleted", runtime=name, state="failed")
            return
        sandbox = self.get(name)
        async with sandbox.lock:
            await sandbox.stop()
            await self._remove(sandbox.record)
            self.sandboxes.pop(name, None)
        # The sandbox's nftables context is gone with it: keep its low descriptor reserved.
        del sandbox
        RESERVE.top_up()
        log.info("sandbox_deleted", runtime=name)

    async def _remove(self, record: RuntimeRecord) -> None:
        """Delete what runtad made for a runtime, then its stored record."""
        if record.adopted:
            path = resolve_netns_path(record.netns)
            if netns_exists(path):
                context = await asyncio.to_thread(NftContext.open, path)
                try:
                    await context.run_async(ruleset.build_table_delete(self.template))
                except NftError:
                    pass  # no table there: nothing of runtad's to remove
        elif record.slot is not None:
            await asyncio.to_thread(sandboxes.delete_created, self._netns_name(record.name), record.slot)
        try:
            await self.store.call(self.store.delete_runtime, record.name)
        except NotFoundError:
            pass

    def _netns_name(self, name: str) -> str:
        return self.config.netns_prefix + name

    def _addresses(self, slot: int) -> sandboxes.SandboxAddresses:
        return sandboxes.SandboxAddresses.for_slot(slot, self.config.ipv4_pool, self.config.ipv6_pool)

    # --- policy -------------------------------------------------------------------

    async def write_policy(
        self, name: str, change: PolicyChange, if_version: int | None, caller_uid: int | None
    ) -> Sandbox:
        """Apply a policy change all-or-nothing and return once the kernel holds it.

        Order: validate; one kernel transaction for the ruleset and the addresses of
        removed hosts; the store; then resolution of new hosts and the end of flows the
        new policy denies. A failed kernel step changes nothing; a failed store write
        puts the previous ruleset back.
        """
        sandbox = self.get(name)
        async with sandbox.lock:
            current = sandbox.policy
            if if_version is not None and if_version != current.version:
                raise VersionConflictError(name, if_version, current.version)
            enabled = current.enabled if change.enabled is None else change.enabled
            inspect = current.inspect if change.inspect is None else change.inspect
            rules = new_rules(name, sandbox.rules, change)
            patterns = tuple(rule.pattern for rule in rules)
            old_patterns = {rule.pattern for rule in sandbox.rules}
            removed = old_patterns - set(patterns)
            added = [pattern for pattern in patterns if pattern not in old_patterns]
            same_mode = enabled == current.enabled and inspect == current.inspect
            if same_mode and not removed and not added:
                return sandbox  # nothing to change: the version stays

            orphans = await sandbox.apply_kernel_change(enabled, inspect, removed)
            try:
                policy = await self.store.call(
                    self.store.save_policy, sandbox.record, enabled, patterns, current.version, inspect
                )
            except RuntadError:
                if not same_mode:
                    await sandbox.revert_ruleset()
                if orphans:
                    # The kernel transaction deleted them; the policy that owns them stays.
                    await sandbox.restore_addresses(orphans)
                raise
            sandbox.adopt_policy(policy, list(rules), removed, orphans)
            log.info(
                "policy_changed", runtime=name, version=policy.version, enabled=enabled,
                inspect=inspect, added=added, removed=sorted(removed), caller_uid=caller_uid,
            )
            await sandbox.resolve_new_hosts(added)
            if enabled and (removed or not current.enabled or inspect != current.inspect):
                await sandbox.end_denied_flows()
            return sandbox


def new_rules(runtime: str, current: list[HostRule], change: PolicyChange) -> list[HostRule]:
    """Return the rule list a change asks for; raise on any invalid host, changing nothing."""
    rules = list(current)
    if change.replace_hosts is not None:
        rules = parse_rules(change.replace_hosts, force=change.force)
    if change.add_hosts is not None:
        present = {rule.pattern for rule in rules}
        for rule in parse_rules(change.add_hosts, force=change.force):
            if rule.pattern not in present:
                rules.append(rule)
                present.add(rule.pattern)
    if change.remove_hosts is not None:
        # Removal takes any spelling of an entry, so parse with force: *.com must be removable.
        to_remove = parse_rules(change.remove_hosts, force=True)
        present = {rule.pattern for rule in rules}
        # Every entry is valid now, so parse each again to name it by its own index:
        # to_remove has dropped duplicate spellings and its indexes can be shorter.
        for index, host in enumerate(change.remove_hosts):
            if parse_rule(host, force=True).pattern not in present:
                raise InvalidRequestError(
                    f"host {change.remove_hosts[index]!r} is not in the allowlist of {runtime!r}:"
                    f" see the allowed hosts with 'runta egress table {runtime}'",
                    field=f"hosts[{index}]",
                )
        removing = {rule.pattern for rule in to_remove}
        rules = [rule for rule in rules if rule.pattern not in removing]
    return rules


def validate_hosts_list(value: object, field: str = "hosts") -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidRequestError(f"{field} must be a list of host name strings", field=field)
    return value
