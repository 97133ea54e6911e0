"""Fixtures of the fault tests: the end-to-end lab and daemon."""

from tests.e2e.conftest import internet, own_runtad, runtad  # noqa: F401 - pytest fixtures
