"""Python SDK for runtad, the per-sandbox egress allowlist daemon.

    from runta import Runta, EgressPolicy

    runta = Runta()
    runtime = runta.runtimes.get("worker")
    runtime.egress.allow(["pypi.org", "*.pythonhosted.org"])
    runtime.egress.enable()
    print(runtime.egress.list())
"""

from __future__ import annotations

from runta._version import __version__
from runta.async_client import AsyncRunta, AsyncRuntime, AsyncRuntimeEgress
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
