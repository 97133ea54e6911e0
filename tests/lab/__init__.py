"""A self-made test internet for end-to-end tests and demos: see README.md."""

from tests.lab.errors import LabError
from tests.lab.processes import client_env
from tests.lab.stale import cleanup_stale
from tests.lab.topology import Lab

__all__ = ["Lab", "LabError", "cleanup_stale", "client_env"]
