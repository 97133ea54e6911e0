"""Who may use the API socket: file mode and group, SO_PEERCRED admission, and write logs.

The daemon here listens in a world-traversable directory and admits a throwaway group
that it creates itself, so clients can run as nobody with or without that group.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.runtad_process import CLEAN_PATH, REPO_ROOT, RuntadProcess
from tests.lab.topology import Lab

pytestmark = pytest.mark.root

NOBODY = "nobody"
NOGROUP = "nogroup"
LOGGED_WITHIN = 5.0
CLIENT_TIMEOUT = 60

# Sends one request with httpx and prints the status and body, or the connect error.
RAW_CLIENT = """
import json, os, sys
import httpx
method, path, body = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
transport = httpx.HTTPTransport(uds=os.environ["RUNTA_SOCKET"])
with httpx.Client(transport=transport, base_url="http://runtad/v1", timeout=30) as client:
    try:
        response = client.request(method, path, json=body)
    except httpx.ConnectError as error:
        print(json.dumps({"connect_error": str(error)}))
        sys.exit(0)
body = response.json() if response.content else None
print(json.dumps({"status": response.status_code, "body": body}))
"""

# Calls Runta().status() and prints the outcome or the SDK error's class and message.
SDK_CLIENT = """
import json
from runta import Runta, RuntaError
try:
    with Runta() as runta:
        status = runta.status()
    print(json.dumps({"runtimes": status.runtimes}))
except RuntaError as error:
    print(json.dumps({"error": type(error).__name__, "message": str(error)}))
"""


@pytest.fixture(scope="module")
def socket_group() -> Iterator[str]:
    """A group name that does not exist yet; runtad creates it, the fixture deletes it."""
    name = f"rtg{secrets.token_hex(3)}"
    with pytest.raises(KeyError):
        grp.getgrnam(name)
    try:
        yield name
    finally:
        subprocess.run(["groupdel", name], check=False, capture_output=True, timeout=10)


@pytest.fixture(scope="module")
def open_dir() -> Iterator[Path]:
    """A directory that every user may traverse but not list, for the socket."""
    path = Path(tempfile.mkdtemp(prefix="runta-access-"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def daemon(internet: Lab, open_dir: Path, socket_group: str) -> Iterator[RuntadProcess]:
    process = RuntadProcess(internet, open_dir, socket_group=socket_group)
    process.start()
    try:
        yield process
    finally:
        process.close()


@pytest.fixture(scope="module")
def group_id(daemon: RuntadProcess, socket_group: str) -> int:
    return grp.getgrnam(socket_group).gr_gid


@pytest.fixture(scope="module")
def nobody_python() -> str:
    """Return a Python of this version that the user nobody may run.

    The venv's interpreter may be a link into /root, which nobody cannot enter.
    """
    expected = f"{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (sys.executable, "/usr/bin/python3"):
        probe = subprocess.run(
            [
                *as_nobody([]),
                candidate,
                "-c",
                "import sys; print(f'{sys.version_info.major}.{sys.version_info.minor}')",
            ],
            check=False,
            capture_output=True,
            text=True,
            timeout=CLIENT_TIMEOUT,
            env={"PATH": CLEAN_PATH},
        )
        if probe.returncode == 0 and probe.stdout.strip() == expected:
            return candidate
    pytest.skip(f"no Python {expected} that the user nobody may run")


def as_nobody(groups: list[str], regid: str = NOGROUP) -> list[str]:
    """Return the setpriv prefix that runs a command as nobody with exactly these groups."""
    group_options = [f"--groups={','.join(groups)}"] if groups else ["--clear-groups"]
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={regid}", *group_options]


def run_client(
    daemon: RuntadProcess, python: str, prefix: list[str], code: str, *args: str
) -> dict[str, Any]:
    env = {
        "PATH": CLEAN_PATH,
        "HOME": "/nonexistent",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{sysconfig.get_paths()['purelib']}",
        "RUNTA_SOCKET": str(daemon.socket_path),
    }
    completed = subprocess.run(
        [*prefix, python, "-c", code, *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT,
        env=env,
        cwd="/",
    )
    assert completed.returncode == 0, completed.stderr
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


def raw_request(
    daemon: RuntadProcess, python: str, prefix: list[str], method: str, path: str, body: Any = None
) -> dict[str, Any]:
    return run_client(daemon, python, prefix, RAW_CLIENT, method, path, json.dumps(body))


def wait_for_log(daemon: RuntadProcess, event: str, **fields: Any) -> dict[str, Any]:
    deadline = time.monotonic() + LOGGED_WITHIN
    while time.monotonic() < deadline:
        for line in daemon.log_events():
            if line.get("event") == event and all(
                line.get(key) == value for key, value in fields.items()
            ):
                return line
        time.sleep(0.1)
    raise AssertionError(f"no {event} log line with {fields} within {LOGGED_WITHIN} s")


class OpenSocket:
    """Make the socket connectable by every user for a with block, then restore its mode."""

    def __init__(self, daemon: RuntadProcess) -> None:
        self.path = daemon.socket_path

    def __enter__(self) -> None:
        self.mode = stat.S_IMODE(self.path.stat().st_mode)
        self.path.chmod(0o666)

    def __exit__(self, *exc_info: object) -> None:
        self.path.chmod(self.mode)


# --- the socket file ----------------------------------------------------------------------------


def test_socket_mode_0660(daemon: RuntadProcess) -> None:
    assert stat.S_IMODE(daemon.socket_path.stat().st_mode) == 0o660


def test_socket_owned_by_root_and_group(daemon: RuntadProcess, group_id: int) -> None:
    info = daemon.socket_path.stat()
    assert info.st_uid == 0
    assert info.st_gid == group_id


def test_missing_group_created(daemon: RuntadProcess, socket_group: str) -> None:
    assert grp.getgrnam(socket_group).gr_name == socket_group
    wait_for_log(daemon, "socket_group_created", group=socket_group)


# --- callers outside the group ------------------------------------------------------------------


def test_outsider_cannot_connect(daemon: RuntadProcess, nobody_python: str) -> None:
    result = raw_request(daemon, nobody_python, as_nobody([]), "GET", "/status")
    assert "Permission denied" in result["connect_error"]


def test_outsider_sdk_error_names_group(daemon: RuntadProcess, nobody_python: str) -> None:
    result = run_client(daemon, nobody_python, as_nobody([]), SDK_CLIENT)
    assert result["error"] == "DaemonUnavailableError"
    assert "permission denied" in result["message"]
    assert "group" in result["message"]
    assert str(daemon.socket_path) in result["message"]


def test_outsider_forbidden_on_open_socket(daemon: RuntadProcess, nobody_python: str) -> None:
    with OpenSocket(daemon):
        result = raw_request(daemon, nobody_python, as_nobody([]), "GET", "/status")
    uid = pwd.getpwnam(NOBODY).pw_uid
    assert result["status"] == 403
    assert result["body"]["error"]["code"] == "forbidden"
    assert result["body"]["error"]["field"] is None
    assert f"uid {uid} may not use runtad" in result["body"]["error"]["message"]


def test_outsider_sdk_forbidden_error(daemon: RuntadProcess, nobody_python: str) -> None:
    with OpenSocket(daemon):
        result = run_client(daemon, nobody_python, as_nobody([]), SDK_CLIENT)
    assert result["error"] == "ForbiddenError"


def test_outsider_write_changes_nothing(daemon: RuntadProcess, nobody_python: str) -> None:
    sandbox = daemon.create_sandbox()
    before = sandbox.egress()
    with OpenSocket(daemon):
        result = raw_request(
            daemon,
            nobody_python,
            as_nobody([]),
            "POST",
            f"/runtimes/{sandbox.name}/egress/allow",
            {"hosts": ["pypi.org"]},
        )
    assert result["status"] == 403
    assert sandbox.egress() == before


# --- admitted callers ---------------------------------------------------------------------------


def test_group_member_admitted(daemon: RuntadProcess, nobody_python: str, group_id: int) -> None:
    result = raw_request(daemon, nobody_python, as_nobody([str(group_id)]), "GET", "/status")
    assert result["status"] == 200


def test_primary_group_admitted(daemon: RuntadProcess, nobody_python: str, group_id: int) -> None:
    prefix = as_nobody([], regid=str(group_id))
    result = raw_request(daemon, nobody_python, prefix, "GET", "/status")
    assert result["status"] == 200


def test_group_member_sdk_status(daemon: RuntadProcess, nobody_python: str, group_id: int) -> None:
    result = run_client(daemon, nobody_python, as_nobody([str(group_id)]), SDK_CLIENT)
    assert "runtimes" in result, result


def test_root_admitted(daemon: RuntadProcess) -> None:
    assert daemon.api("GET", "/status").status_code == 200


# --- write logs -----------------------------------------------------------------------------------


def test_root_create_logs_uid(daemon: RuntadProcess) -> None:
    sandbox = daemon.create_sandbox()
    line = wait_for_log(daemon, "api_write", action="create_runtime", runtime=sandbox.name)
    assert line["caller_uid"] == 0


def test_member_policy_write_logs_uid(
    daemon: RuntadProcess, nobody_python: str, group_id: int
) -> None:
    sandbox = daemon.create_sandbox()
    result = raw_request(
        daemon,
        nobody_python,
        as_nobody([str(group_id)]),
        "POST",
        f"/runtimes/{sandbox.name}/egress/allow",
        {"hosts": ["pypi.org"]},
    )
    assert result["status"] == 200
    line = wait_for_log(daemon, "policy_changed", runtime=sandbox.name)
    assert line["caller_uid"] == pwd.getpwnam(NOBODY).pw_uid


def test_member_delete_logs_uid(daemon: RuntadProcess, nobody_python: str, group_id: int) -> None:
    sandbox = daemon.create_sandbox()
    result = raw_request(
        daemon, nobody_python, as_nobody([str(group_id)]), "DELETE", f"/runtimes/{sandbox.name}"
    )
    assert result["status"] == 204
    daemon.sandboxes.discard(sandbox.name)
    line = wait_for_log(daemon, "api_write", action="delete_runtime", runtime=sandbox.name)
    assert line["caller_uid"] == pwd.getpwnam(NOBODY).pw_uid
