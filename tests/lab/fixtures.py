"""pytest fixtures that give a test a running Lab and always close it.

Load them with ``pytest_plugins = ["tests.lab.fixtures"]`` in the top-level conftest,
or import them into a test module.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.lab.stale import cleanup_stale
from tests.lab.topology import Lab


def _require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root to create network namespaces")


@pytest.fixture
def lab() -> Iterator[Lab]:
    """A fresh lab for one test."""
    _require_root()
    cleanup_stale()
    with Lab() as fresh_lab:
        yield fresh_lab


@pytest.fixture(scope="session")
def lab_session() -> Iterator[Lab]:
    """One lab shared by every test of the session, so each test should use names of its own."""
    _require_root()
    cleanup_stale()
    with Lab() as shared_lab:
        yield shared_lab
