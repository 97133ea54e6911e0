"""Asyncio client: ``AsyncRunta``, the twin of ``Runta`` with awaitable calls.

    async with AsyncRunta() as runta:
        runtime = await runta.runtimes.get("worker")
        await runtime.egress.allow(["pypi.org", "*.pythonhosted.org"])
        await runtime.egress.enable()
"""

from __future__ import annotations

import builtins
import os
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from runta import _endpoints as endpoints
from runta._endpoints import HostsArgument, parse_document, parse_items, parse_page
from runta._http import DEFAULT_TIMEOUT_SECONDS, AwaitableTransport, resolve_socket_path
from runta.models import (
    Audit,
    Egress,
    EgressEvent,
    EgressPolicy,
    HostList,
    Page,
    RuntimeInfo,
    Status,
    runtime_fields_from_json,
)


class AsyncRuntimeEgress:
    """Egress policy of one runtime. Every write returns the new Egress document."""

    def __init__(self, transport: AwaitableTransport, runtime: str) -> None:
        self._transport = transport
        self.runtime = runtime

    async def table(self) -> Egress:
        """Fetch the full egress document: switch, hosts, version, addresses and expiries."""
        data = await self._transport.send(endpoints.get_egress(self.runtime))
        return parse_document(data, Egress.from_json)

    async def list(self) -> HostList:
        """Fetch the allowed hosts as a list that also carries ``enabled`` and ``version``."""
        return (await self.table()).to_host_list()

    async def get_policy(self) -> EgressPolicy:
        return (await self.table()).to_policy()

    async def allow(
        self,
        hosts: HostsArgument,
        *,
        force: bool = False,
        if_version: int | None = None,
        normalize: bool = True,
    ) -> Egress:
        """Add hosts to the allowlist, leaving hosts already present as they are.

        URLs are reduced to their host with runta.urls.normalize_host unless ``normalize``
        is False. ``force`` allows a wildcard over a public suffix (``*.com``).
        """
        request = endpoints.allow_hosts(
            self.runtime, hosts, force=force, if_version=if_version, normalize=normalize
        )
        return parse_document(await self._transport.send(request), Egress.from_json)

    async def remove(
        self, hosts: HostsArgument, *, if_version: int | None = None, normalize: bool = True
    ) -> Egress:
        """Remove hosts from the allowlist. A host that is not listed raises InvalidRequestError."""
        request = endpoints.remove_hosts(
            self.runtime, hosts, if_version=if_version, normalize=normalize
        )
        return parse_document(await self._transport.send(request), Egress.from_json)

    async def enable(self, *, if_version: int | None = None) -> Egress:
        """Turn enforcement on: outbound traffic is denied unless its host is allowed."""
        request = endpoints.set_enforcement(self.runtime, True, if_version=if_version)
        return parse_document(await self._transport.send(request), Egress.from_json)

    async def disable(self, *, if_version: int | None = None) -> Egress:
        """Turn enforcement off: outbound traffic is unrestricted but still observed."""
        request = endpoints.set_enforcement(self.runtime, False, if_version=if_version)
        return parse_document(await self._transport.send(request), Egress.from_json)

    async def update_policy(
        self,
        policy: EgressPolicy,
        *,
        force: bool = False,
        if_version: int | None = None,
        normalize: bool = True,
    ) -> Egress:
        """Replace the whole policy (PUT), removing hosts that ``policy`` does not list.

        The inspect mode stays as it is when ``policy.inspect`` is None.
        """
        request = endpoints.put_egress(
            self.runtime, policy, force=force, if_version=if_version, normalize=normalize
        )
        return parse_document(await self._transport.send(request), Egress.from_json)

    async def patch_policy(
        self,
        *,
        enabled: bool | None = None,
        allowed_hosts: HostsArgument | None = None,
        force: bool = False,
        if_version: int | None = None,
        normalize: bool = True,
        inspect: str | None = None,
    ) -> Egress:
        """Change only the given fields of the policy (PATCH). None leaves a field as it is.

        ``inspect`` is the gateway's mode, "first" or "all" (runta.models.INSPECT_MODES).
        Another value raises InvalidInspectModeError before any request is sent.
        """
        request = endpoints.patch_egress(
            self.runtime,
            enabled=enabled,
            allowed_hosts=allowed_hosts,
            force=force,
            if_version=if_version,
            normalize=normalize,
            inspect=inspect,
        )
        return parse_document(await self._transport.send(request), Egress.from_json)

    async def audit(
        self, limit: int | None = None, *, after: str | None = None, order: str | None = None
    ) -> Page[EgressEvent]:
        """Fetch one page of this runtime's egress events. Iterate the page for the events."""
        request = endpoints.list_events(self.runtime, limit=limit, after=after, order=order)
        return parse_page(await self._transport.send(request), EgressEvent.from_json)


@dataclass(frozen=True)
class AsyncRuntime(RuntimeInfo):
    """Runtime fetched through ``AsyncRunta``, whose ``egress`` manages its policy."""

    _transport: AwaitableTransport | None = field(
        default=None, repr=False, compare=False, kw_only=True
    )

    @property
    def egress(self) -> AsyncRuntimeEgress:
        return AsyncRuntimeEgress(self._bound_transport(), self.name)

    async def refresh(self) -> AsyncRuntime:
        """Fetch this runtime again and return the current state."""
        data = await self._bound_transport().send(endpoints.get_runtime(self.name))
        return bind_async_runtime(data, self._bound_transport())

    async def delete(self) -> None:
        await self._bound_transport().send(endpoints.delete_runtime(self.name))

    def _bound_transport(self) -> AwaitableTransport:
        if self._transport is None:
            raise RuntimeError(
                f"runtime {self.name!r} has no client: "
                "fetch it with AsyncRunta().runtimes.get(name)"
            )
        return self._transport


def bind_async_runtime(data: object, transport: AwaitableTransport) -> AsyncRuntime:
    fields = parse_document(data, runtime_fields_from_json)
    return AsyncRuntime(**fields, _transport=transport)


class AsyncRuntimes:
    """Create, fetch, list and delete runtimes."""

    def __init__(self, transport: AwaitableTransport) -> None:
        self._transport = transport

    def egress(self, name: str) -> AsyncRuntimeEgress:
        """Return the egress policy of runtime ``name`` without fetching the runtime first."""
        return AsyncRuntimeEgress(self._transport, name)

    async def create(self, name: str, netns: str | None = None) -> AsyncRuntime:
        """Create a runtime with its own netns, or adopt ``netns`` (a name or a path)."""
        data = await self._transport.send(endpoints.create_runtime(name, netns))
        return bind_async_runtime(data, self._transport)

    async def get(self, name: str) -> AsyncRuntime:
        data = await self._transport.send(endpoints.get_runtime(name))
        return bind_async_runtime(data, self._transport)

    async def list(self) -> builtins.list[AsyncRuntime]:
        data = await self._transport.send(endpoints.list_runtimes())
        return parse_items(data, lambda item: bind_async_runtime(item, self._transport))

    async def delete(self, name: str) -> None:
        """Delete a runtime with the netns runtad created for it. An adopted netns stays."""
        await self._transport.send(endpoints.delete_runtime(name))


class AsyncAudits:
    """Audit records of all runtimes."""

    def __init__(self, transport: AwaitableTransport) -> None:
        self._transport = transport

    async def list(
        self,
        runtime: RuntimeInfo | str | None = None,
        category: str | None = None,
        limit: int | None = None,
        *,
        after: str | None = None,
        order: str | None = None,
    ) -> Page[Audit]:
        """Fetch one page of audit records, optionally for one runtime and category."""
        request = endpoints.list_audits(
            runtime=runtime, category=category, limit=limit, after=after, order=order
        )
        return parse_page(await self._transport.send(request), Audit.from_json)


def open_httpx_transport(socket_path: str, timeout: float) -> AwaitableTransport:
    # Imported on first use so that importing runta does not load httpx, which the CLI
    # never needs.
    from runta._transport import AsyncTransport

    return AsyncTransport(socket_path, timeout)


class AsyncRunta:
    """Asyncio client for runtad on its unix socket.

    The socket is ``socket``, else $RUNTA_SOCKET, else /run/runta/runtad.sock. Close the
    client with ``await aclose()`` or use it as an async context manager.
    """

    def __init__(
        self,
        socket: str | os.PathLike[str] | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self.socket_path = resolve_socket_path(socket)
        self._transport = open_httpx_transport(self.socket_path, timeout)
        self.runtimes = AsyncRuntimes(self._transport)
        self.audits = AsyncAudits(self._transport)

    async def status(self) -> Status:
        data = await self._transport.send(endpoints.get_status())
        return parse_document(data, Status.from_json)

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
