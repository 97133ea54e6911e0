"""The runta CLI run as a user without access to runtad's socket."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the CLI as another user"),
    pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)"),
]

REPO_ROOT = Path(__file__).resolve().parents[2]
AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


@pytest.fixture
def root_only_socket() -> Iterator[Path]:
    """A listening socket that only root may connect to, in a directory anyone can enter."""
    directory = Path(tempfile.mkdtemp(prefix="runta-perm-", dir="/tmp"))
    directory.chmod(0o755)
    path = directory / "runtad.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    path.chmod(0o600)
    yield path
    listener.close()
    shutil.rmtree(directory)


def test_cli_permission_denied_as_user(root_only_socket: Path) -> None:
    command = [sys.executable, "-m", "runta.cli", "--socket", str(root_only_socket), "status"]

    done = subprocess.run(
        [*AS_NOBODY, *command],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )

    assert done.returncode == 69
    assert done.stdout == ""
    assert done.stderr == (
        f"runta: error: permission denied on the runtad socket {root_only_socket}: join the "
        "'runta' group (usermod -aG runta USER, then log in again) or run as root.\n"
    )
