"""One runtad with hundreds of sandboxes: libnftables needs descriptors below 1024."""

from __future__ import annotations

import subprocess

import pytest

from tests.e2e.runtad_process import RuntadProcess

pytestmark = [pytest.mark.root, pytest.mark.slow]

SANDBOXES = 200


def test_hundreds_of_sandboxes_survive_restart(own_runtad: RuntadProcess) -> None:
    for index in range(SANDBOXES):
        netns = f"{own_runtad.netns_prefix}m{index}"
        subprocess.run(["ip", "netns", "add", netns], check=True)
        response = own_runtad.api("POST", "/runtimes", {"name": f"m{index}", "netns": netns})
        assert response.status_code == 201, response.text
        own_runtad.sandboxes.add(f"m{index}")
    assert own_runtad.process is not None
    assert own_runtad.process.poll() is None

    own_runtad.restart()
    items = own_runtad.api("GET", "/runtimes").json()["items"]
    assert len(items) == SANDBOXES
    assert all(item["state"] == "running" for item in items)
    enabled = own_runtad.api("POST", f"/runtimes/m{SANDBOXES - 1}/egress/enable")
    assert enabled.status_code == 200
