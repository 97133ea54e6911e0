"""Blocking client: ``Runta`` and the resources it hands out.

    runta = Runta()
    runtime = runta.runtimes.get("worker")
    runtime.egress.allow(["pypi.org", "*.pythonhosted.org"])
    runtime.egress.enable()
"""

from __future__ import annotations

import builtins
import os
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from runta import _endpoints as endpoints
from runta._endpoints import HostsArgument, parse_document, parse_items, parse_page
from runta._http import DEFAULT_TIMEOUT_SECONDS, Transport, resolve_socket_path
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


class RuntimeEgress:
    """Egress policy of one runtime. Every write returns the new Egress document."""

    def __init__(self, transport: Transport, runtime: str) -> None:
        self._transport = transport
        self.runtime = runtime

    def table(self) -> Egress:
        """Fetch the full egress document: switch, hosts, version, addresses and expiries."""
        data = self._transport.send(endpoints.get_egress(self.runtime))
        return parse_document(data, Egress.from_json)

    def list(self) -> HostList:
        """Fetch the allowed hosts as a list that also carries ``enabled`` and ``version``."""
        return self.table().to_host_list()

    def get_policy(self) -> EgressPolicy:
        return self.table().to_policy()

    def allow(
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
        return parse_document(self._transport.send(request), Egress.from_json)

    def remove(
        self, hosts: HostsArgument, *, if_version: int | None = None, normalize: bool = True
    ) -> Egress:
        """Remove hosts from the allowlist. A host that is not listed raises InvalidRequestError."""
        request = endpoints.remove_hosts(
            self.runtime, hosts, if_version=if_version, normalize=normalize
        )
        return parse_document(self._transport.send(request), Egress.from_json)

    def enable(self, *, if_version: int | None = None) -> Egress:
        """Turn enforcement on: outbound traffic is denied unless its host is allowed."""
        request = endpoints.set_enforcement(self.runtime, True, if_version=if_version)
        return parse_document(self._transport.send(request), Egress.from_json)

    def disable(self, *, if_version: int | None = None) -> Egress:
        """Turn enforcement off: outbound traffic is unrestricted but still observed."""
        request = endpoints.set_enforcement(self.runtime, False, if_version=if_version)
        return parse_document(self._transport.send(request), Egress.from_json)

    def update_policy(
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
        return parse_document(self._transport.send(request), Egress.from_json)

    def patch_policy(
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
        return parse_document(self._transport.send(request), Egress.from_json)

    def audit(
        self, limit: int | None = None, *, after: str | None = None, order: str | None = None
    ) -> Page[EgressEvent]:
        """Fetch one page of this runtime's egress events. Iterate the page for the events."""
        request = endpoints.list_events(self.runtime, limit=limit, after=after, order=order)
        return parse_page(self._transport.send(request), EgressEvent.from_json)


@dataclass(frozen=True)
class Runtime(RuntimeInfo):
    """Runtime fetched through ``Runta``, whose ``egress`` manages its policy."""

    _transport: Transport | None = field(default=None, repr=False, compare=False, kw_only=True)

    @property
    def egress(self) -> RuntimeEgress:
        return RuntimeEgress(self._bound_transport(), self.name)

    def refresh(self) -> Runtime:
        """Fetch this runtime again and return the current state."""
        data = self._bound_transport().send(endpoints.get_runtime(self.name))
        return bind_runtime(data, self._bound_transport())

    def delete(self) -> None:
        self._bound_transport().send(endpoints.delete_runtime(self.name))

    def _bound_transport(self) -> Transport:
        if self._transport is None:
            raise RuntimeError(
                f"runtime {self.name!r} has no client: fetch it with Runta().runtimes.get(name)"
            )
        return self._transport


def bind_runtime(data: object, transport: Transport) -> Runtime:
    fields = parse_document(data, runtime_fields_from_json)
    return Runtime(**fields, _transport=transport)


class Runtimes:
    """Create, fetch, list and delete runtimes."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def egress(self, name: str) -> RuntimeEgress:
        """Return the egress policy of runtime ``name`` without fetching the runtime first."""
        return RuntimeEgress(self._transport, name)

    def create(self, name: str, netns: str | None = None) -> Runtime:
        """Create a runtime with its own netns, or adopt ``netns`` (a name or a path)."""
        data = self._transport.send(endpoints.create_runtime(name, netns))
        return bind_runtime(data, self._transport)

    def get(self, name: str) -> Runtime:
        data = self._transport.send(endpoints.get_runtime(name))
        return bind_runtime(data, self._transport)

    def list(self) -> builtins.list[Runtime]:
        data = self._transport.send(endpoints.list_runtimes())
        return parse_items(data, lambda item: bind_runtime(item, self._transport))

    def delete(self, name: str) -> None:
        """Delete a runtime with the netns runtad created for it. An adopted netns stays."""
        self._transport.send(endpoints.delete_runtime(name))


class Audits:
    """Audit records of all runtimes."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def list(
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
        return parse_page(self._transport.send(request), Audit.from_json)


class Runta:
    """Client for runtad on its unix socket.

    The socket is ``socket``, else $RUNTA_SOCKET, else /run/runta/runtad.sock. Close the
    client with ``close()`` or use it as a context manager.
    """

    def __init__(
        self,
        socket: str | os.PathLike[str] | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self.socket_path = resolve_socket_path(socket)
        self._transport = self._open_transport(self.socket_path, timeout)
        self.runtimes = Runtimes(self._transport)
        self.audits = Audits(self._transport)

    @staticmethod
    def _open_transport(socket_path: str, timeout: float) -> Transport:
        """Return the httpx transport. The CLI overrides this with a standard-library one."""
        # Imported on first use so that importing runta does not load httpx.
        from runta._transport import SyncTransport

        return SyncTransport(socket_path, timeout)

    def status(self) -> Status:
        data = self._transport.send(endpoints.get_status())
        return parse_document(data, Status.from_json)

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
