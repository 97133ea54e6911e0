"""The daemon's exception root and the conditions shared across its parts.

Each error carries a stable machine code and an HTTP status, so the API translates it in
one place. Parts raise their own small subclasses next to the code that raises them.
"""

from __future__ import annotations


class RuntadError(Exception):
    """Root of every error the daemon raises on purpose."""

    code = "internal"
    status = 500
    field: str | None = None

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if field is not None:
            self.field = field


class InvalidRequestError(RuntadError):
    code = "invalid_request"
    status = 400


class InvalidNameError(RuntadError):
    code = "invalid_name"
    status = 400

    def __init__(self, name: str) -> None:
        super().__init__(
            f"invalid sandbox name {name!r}: use 1 to 31 characters from a-z, 0-9, '-' and '_',"
            " starting with a letter or digit",
            field="name",
        )
        self.name = name


class NotFoundError(RuntadError):
    code = "not_found"
    status = 404

    def __init__(self, runtime: str) -> None:
        super().__init__(
            f"sandbox {runtime!r} not found: list sandboxes with 'runta sandbox list'"
            f" or create it with 'runta sandbox create {runtime}'"
        )
        self.runtime = runtime


class AlreadyExistsError(RuntadError):
    code = "already_exists"
    status = 409

    def __init__(self, runtime: str) -> None:
        super().__init__(
            f"sandbox {runtime!r} already exists: pick another name"
            f" or delete it first with 'runta sandbox delete {runtime}'",
            field="name",
        )
        self.runtime = runtime


class VersionConflictError(RuntadError):
    code = "version_conflict"
    status = 409

    def __init__(self, runtime: str, expected: int, actual: int) -> None:
        super().__init__(
            f"policy of sandbox {runtime!r} is at version {actual}, not {expected}:"
            " read the policy again and retry with the current version"
        )
        self.runtime = runtime
        self.expected = expected
        self.actual = actual


class NetnsNotFoundError(RuntadError):
    code = "netns_not_found"
    status = 422

    def __init__(self, netns: str) -> None:
        super().__init__(
            f"network namespace {netns!r} not found: give a name listed by 'ip netns list'"
            " or a path such as /proc/PID/ns/net",
            field="netns",
        )
        self.netns = netns


class KernelApplyError(RuntadError):
    """The kernel rejected a ruleset or set update; what it held before stays in force."""

    code = "kernel_apply_failed"
    status = 503

    def __init__(self, runtime: str, detail: str) -> None:
        super().__init__(
            f"the kernel rejected the nftables update for sandbox {runtime!r}: {detail.strip()};"
            " the previous rules stay in force"
        )
        self.runtime = runtime
        self.detail = detail


class StoreError(RuntadError):
    """The state database could not be written; nothing was changed."""

    code = "store_unavailable"
    status = 503
