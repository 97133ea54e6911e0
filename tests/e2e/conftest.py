"""Fixtures for end-to-end tests: a lab, a real runtad in its host namespace, sandboxes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.runtad_process import RuntadProcess
from tests.lab.topology import Lab

pytestmark = pytest.mark.root


def _require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("end-to-end tests need root for network namespaces and nftables")


def add_common_hosts(world: Lab) -> Lab:
    """Give a lab the hosts most tests use."""
    world.add_host("pypi.org", v4=["192.0.2.10"], v6=["2001:db8::10"], ttl=300)
    world.add_host("files.pythonhosted.org", v4=["192.0.2.11"], v6=["2001:db8::11"], ttl=300)
    world.add_host("a.b.c.pythonhosted.org", v4=["192.0.2.12"], ttl=300)
    world.add_host("pythonhosted.org", v4=["192.0.2.13"], ttl=300)
    world.add_host("example.com", v4=["198.51.100.7"], v6=["2001:db8::7"], ttl=300)
    world.add_host("evilpythonhosted.org", v4=["198.51.100.8"], ttl=300)
    world.add_host("pythonhosted.org.evil.test", v4=["198.51.100.9"], ttl=300)
    return world


@pytest.fixture(scope="module")
def internet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A lab with the common hosts, shared by one module's tests and its daemon."""
    _require_root()
    with Lab() as world:
        yield add_common_hosts(world)


@pytest.fixture(scope="module")
def runtad(internet: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntadProcess]:
    """One daemon shared by a module's tests; each test makes its own sandboxes."""
    _require_root()
    daemon = RuntadProcess(internet, tmp_path_factory.mktemp("runtad"))
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.close()


@pytest.fixture
def own_runtad(tmp_path: Path) -> Iterator[RuntadProcess]:
    """A daemon, in a lab of its own, for one test that restarts, kills or reconfigures it."""
    _require_root()
    with Lab() as world:
        daemon = RuntadProcess(add_common_hosts(world), tmp_path)
        daemon.start()
        try:
            yield daemon
        finally:
            daemon.close()
