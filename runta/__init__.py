"""Python SDK for runtad, the per-sandbox egress allowlist daemon.

    from runta import Runta, EgressPolicy

    runta = Runta()
    runtime = runta.runtimes.get("worker")
    runtime.egress.allow(["pypi.org", "*.pythonhosted.org"])
    runtime.egress.enable()
    print(runtime.egress.list())
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runta._version import __version__
from runta.client import Runta, Runtime, RuntimeEgress
from runta.errors import (
    AlreadyExistsError,
    DaemonTimeoutError,
    DaemonUnavailableError,
    ForbiddenError,
    InternalError,
    InvalidInspectModeError,
    InvalidNameError,
    InvalidRequestError,
    KernelApplyFailedError,
    MethodNotAllowedError,
    SandboxUnavailableError,
    PoolExhaustedError,
    StoreUnavailableError,
    AuditUnavailableError,
    NetnsNotFoundError,
    NotFoundError,
    PublicSuffixWildcardError,
    RuntaError,
    UnexpectedResponseError,
    VersionConflictError,
)
from runta.models import (
    Audit,
    Egress,
    EgressAddress,
    EgressEntry,
    EgressEvent,
    EgressPolicy,
    EgressState,
    HostList,
    Page,
    RuntimeInfo,
    Status,
)

# The base class of runta.errors.InvalidHostError, so that `except runta.InvalidHostError`
# also catches a rejection by a direct normalize_host call.
from runta.urls import InvalidHostError, PortIgnoredWarning, normalize_host

if TYPE_CHECKING:
    from runta.async_client import AsyncRunta, AsyncRuntime, AsyncRuntimeEgress

# Loaded on first access, because the runta CLI never uses the asyncio client.
_ASYNC_NAMES = ("AsyncRunta", "AsyncRuntime", "AsyncRuntimeEgress")


def __getattr__(name: str) -> Any:
    if name in _ASYNC_NAMES:
        from runta import async_client

        return getattr(async_client, name)
    raise AttributeError(f"module 'runta' has no attribute {name!r}")

__all__ = [
    "AlreadyExistsError",
    "AsyncRunta",
    "AsyncRuntime",
    "AsyncRuntimeEgress",
    "Audit",
    "DaemonTimeoutError",
    "DaemonUnavailableError",
    "Egress",
    "EgressAddress",
    "EgressEntry",
    "EgressEvent",
    "EgressPolicy",
    "EgressState",
    "ForbiddenError",
    "HostList",
    "InternalError",
    "InvalidHostError",
    "InvalidInspectModeError",
    "InvalidNameError",
    "InvalidRequestError",
    "KernelApplyFailedError",
    "MethodNotAllowedError",
    "SandboxUnavailableError",
    "PoolExhaustedError",
    "StoreUnavailableError",
    "AuditUnavailableError",
    "NetnsNotFoundError",
    "NotFoundError",
    "Page",
    "PortIgnoredWarning",
    "PublicSuffixWildcardError",
    "Runta",
    "RuntaError",
    "Runtime",
    "RuntimeEgress",
    "RuntimeInfo",
    "Status",
    "UnexpectedResponseError",
    "VersionConflictError",
    "__version__",
    "normalize_host",
]
