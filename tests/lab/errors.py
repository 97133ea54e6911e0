"""Errors raised while building, running or tearing down a test lab."""

from __future__ import annotations

from collections.abc import Sequence


class LabError(Exception):
    """Root of every error the lab raises."""


class LabCommandError(LabError):
    """A setup or teardown command exited non-zero."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(
            f"command failed with exit code {returncode}: {' '.join(self.argv)}: "
            f"{stderr.strip() or '(no stderr)'}"
        )


class ServerNotReadyError(LabError):
    """A server process did not accept TCP connections on its port in time."""

    def __init__(self, server: str, address: str, port: int, timeout: float, log_tail: str) -> None:
        self.server = server
        self.address = address
        self.port = port
        self.timeout = timeout
        self.log_tail = log_tail
        super().__init__(
            f"{server} did not listen on {address} port {port} within {timeout:.1f} s. "
            f"check its log:\n{log_tail}"
        )


class ServerExitedError(LabError):
    """A server process exited before it started listening."""

    def __init__(self, server: str, returncode: int, log_tail: str) -> None:
        self.server = server
        self.returncode = returncode
        self.log_tail = log_tail
        super().__init__(
            f"{server} exited with code {returncode} before it listened. Its log:\n{log_tail}"
        )


class AddressNotAllowedError(LabError):
    """A server address the lab must not put in the inet namespace."""

    def __init__(self, address: str, reason: str) -> None:
        self.address = address
        self.reason = reason
        super().__init__(f"server address {address} is not allowed: {reason}")


class LabNotStartedError(LabError):
    """A lab method that needs running namespaces was called before start()."""

    def __init__(self, method: str) -> None:
        self.method = method
        super().__init__(f"Lab.{method}() needs a started lab. Call start() or use 'with Lab()'")
