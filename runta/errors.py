"""Exceptions raised by the runta SDK and CLI.

Every error runtad returns carries a stable code (docs/api.md, "Errors"). Each code has
one subclass of RuntaError here, and an unknown code raises RuntaError itself.

Host rejections: runta.urls.InvalidHostError is what ``normalize_host`` raises, and
InvalidHostError here subclasses it and RuntaError. The SDK raises this subclass for
local and server-side rejections alike, so ``except runta.InvalidHostError`` (the
runta.urls class) catches every rejection, including a direct ``normalize_host`` call.
"""

from __future__ import annotations

from typing import Any

from runta import urls


class RuntaError(Exception):
    """Root of every SDK error: an API error, a local rejection or an unreachable daemon.

    ``code`` is the API's machine-readable code, ``field`` names the offending request
    field (``hosts[1]``) or is None, and ``status`` is the HTTP status, None for errors
    raised before a response arrived.
    """

    code: str = "unknown"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        field: str | None = None,
        status: int | None = None,
    ) -> None:
        # Exception.__init__ is called directly because InvalidHostError also derives from
        # runta.urls.InvalidHostError, whose __init__ takes other arguments.
        Exception.__init__(self, message)
        self.message = message
        if code is not None:
            self.code = code
        self.field = field
        self.status = status

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, message={self.message!r}, "
            f"field={self.field!r}, status={self.status!r})"
        )


class InvalidRequestError(RuntaError):
    """The body, a field or a query parameter is malformed."""

    code = "invalid_request"


class InvalidHostError(RuntaError, urls.InvalidHostError):
    """An allowlist entry is not a host name. The message shows the bare host to use.

    ``host`` is the rejected entry as sent (empty when runtad's ``field`` names no entry
    of the request) and ``reason`` the code of runta.urls, or ``invalid_host`` for a
    rejection by runtad.
    """

    code = "invalid_host"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        field: str | None = None,
        status: int | None = None,
        host: str = "",
        reason: str = "invalid_host",
    ) -> None:
        super().__init__(message, code=code, field=field, status=status)
        self.host = host
        self.reason = reason


class InvalidInspectModeError(InvalidRequestError, ValueError):
    """An ``inspect`` value is neither of the gateway's modes, rejected before sending.

    ``value`` is the rejected value and ``choices`` the modes the API takes.
    """

    def __init__(self, value: object, choices: tuple[str, ...]) -> None:
        names = " or ".join(repr(choice) for choice in choices)
        super().__init__(
            f"invalid inspect mode {value!r}: use {names} "
            "('first' checks TCP 80/443 connections to addresses outside the allowed sets, "
            "'all' checks every TCP 80/443 connection)",
            field="inspect",
        )
        self.value = value
        self.choices = choices


class PublicSuffixWildcardError(RuntaError):
    """A wildcard covers a public suffix (``*.com``). Retry with ``force=True`` to allow it."""

    code = "public_suffix_wildcard"


class InvalidNameError(RuntaError):
    """A runtime name does not match ``[a-z0-9][a-z0-9_-]{0,30}``."""

    code = "invalid_name"


class ForbiddenError(RuntaError):
    """The caller is neither root nor in the API group."""

    code = "forbidden"


class NotFoundError(RuntaError):
    """No runtime of that name, or no such route."""

    code = "not_found"


class AlreadyExistsError(RuntaError):
    """A runtime of that name exists."""

    code = "already_exists"


class VersionConflictError(RuntaError):
    """The If-Match version differs from the stored policy version."""

    code = "version_conflict"


class NetnsNotFoundError(RuntaError):
    """The netns given on create names no existing network namespace."""

    code = "netns_not_found"


class KernelApplyFailedError(RuntaError):
    """The kernel rejected the ruleset or set update. The previous rules stay in force."""

    code = "kernel_apply_failed"


class MethodNotAllowedError(RuntaError):
    """The route exists but does not take this HTTP method."""

    code = "method_not_allowed"


class SandboxUnavailableError(RuntaError):
    """The sandbox is stored but failed to start; the message says why."""

    code = "sandbox_unavailable"


class PoolExhaustedError(RuntaError):
    """No free subnet is left in the address pools for a new sandbox."""

    code = "pool_exhausted"


class StoreUnavailableError(RuntaError):
    """The state database could not be written; nothing was changed."""

    code = "store_unavailable"


class AuditUnavailableError(RuntaError):
    """The audit store cannot be read right now."""

    code = "audit_unavailable"


class InternalError(RuntaError):
    """A fault inside runtad. Its log contains the traceback."""

    code = "internal"


class DaemonUnavailableError(RuntaError):
    """runtad cannot be reached on its unix socket."""

    code = "daemon_unavailable"

    def __init__(self, message: str, *, socket_path: str) -> None:
        super().__init__(message)
        self.socket_path = socket_path


class DaemonTimeoutError(DaemonUnavailableError):
    """runtad accepted the connection but sent no response in time."""

    code = "daemon_timeout"


class UnexpectedResponseError(RuntaError):
    """runtad sent a response that does not follow the API contract."""

    code = "unexpected_response"


API_ERRORS: dict[str, type[RuntaError]] = {
    cls.code: cls
    for cls in (
        InvalidRequestError,
        InvalidHostError,
        PublicSuffixWildcardError,
        InvalidNameError,
        ForbiddenError,
        NotFoundError,
        AlreadyExistsError,
        VersionConflictError,
        NetnsNotFoundError,
        KernelApplyFailedError,
        MethodNotAllowedError,
        SandboxUnavailableError,
        PoolExhaustedError,
        StoreUnavailableError,
        AuditUnavailableError,
        InternalError,
    )
}


def error_from_json(status: int, body: Any) -> RuntaError:
    """Build the exception for an error response from its status and decoded JSON body."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return UnexpectedResponseError(
            f"runtad returned HTTP {status} without an error body: {body!r}",
            status=status,
        )

    code = error.get("code")
    field = error.get("field")
    message = error["message"]
    code = code if isinstance(code, str) else None
    field = field if isinstance(field, str) else None
    if code == InvalidHostError.code:
        reason = error.get("reason")
        if isinstance(reason, str):
            return InvalidHostError(message, code=code, field=field, status=status, reason=reason)
        return InvalidHostError(message, code=code, field=field, status=status)
    cls = API_ERRORS.get(code, RuntaError) if code is not None else RuntaError
    return cls(message, code=code, field=field, status=status)
