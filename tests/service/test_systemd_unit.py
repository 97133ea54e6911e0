"""runtad as a systemd service, in a Debian 12 container booted by systemd-nspawn.

Opt-in with RUNTA_SERVICE_TEST=1: the first run downloads a Debian base system with
debootstrap (about 250 MB on disk) into /var/cache/runta-nspawn; later runs reuse it and
take about 30 s. tests/service/run_nspawn.sh does the work and lists its checks.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.root]

SCRIPT = Path(__file__).with_name("run_nspawn.sh")
# The first run's debootstrap plus both install.sh runs took about 2 minutes here.
TIMEOUT_SECONDS = 900


@pytest.mark.timeout(TIMEOUT_SECONDS + 60)
def test_systemd_unit_in_nspawn() -> None:
    if os.environ.get("RUNTA_SERVICE_TEST") != "1":
        pytest.skip("set RUNTA_SERVICE_TEST=1 to boot a Debian container with systemd-nspawn")
    if os.geteuid() != 0:
        pytest.skip("systemd-nspawn needs root")
    for tool in ("debootstrap", "systemd-nspawn"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is missing: apt-get install debootstrap systemd-container")

    completed = subprocess.run(
        ["bash", str(SCRIPT)], capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False
    )
    output = completed.stdout + completed.stderr
    if completed.returncode == 75:
        pytest.skip(f"the Debian mirror could not be reached, so no container was built: {output[-500:]}")
    failures = [line for line in output.splitlines() if line.startswith("FAIL ")]
    summary = re.search(r"^(\d+) passed, (\d+) failed$", output, re.MULTILINE)
    assert summary is not None, output[-4000:]
    assert failures == [], output[-4000:]
    assert int(summary[1]) > 0
    assert completed.returncode == 0, output[-4000:]
