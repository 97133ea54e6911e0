"""Show runtad enforcing a sandbox, end to end, on a self-made test internet.

runtad runs in a network namespace that plays the host. Behind it, an "internet"
namespace serves DNS and HTTPS for a few names with a test CA, all in documentation
address ranges, so nothing here reaches the machine's real network. The demo runs the
user documentation's commands, then real clients inside the sandbox, and removes
everything it made when it ends.

Run as root: `make demo` (or `.venv/bin/python -m scripts.demo`).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.e2e.runtad_process import CLEAN_PATH, RuntadProcess
from tests.lab.topology import Lab

REPO_ROOT = Path(__file__).resolve().parents[1]
SANDBOX = "worker"


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


class Expectations:
    """The demo's checks: each failed one is printed at once and makes the demo exit 1."""

    def __init__(self) -> None:
        self.failed: list[str] = []

    def check(self, completed: subprocess.CompletedProcess[str], succeeds: bool, output: str = "") -> None:
        ok = (completed.returncode == 0) == succeeds and output in completed.stdout
        if not ok:
            wanted = "success" if succeeds else "failure"
            detail = f" with {output!r} in its output" if output else ""
            message = f"expected {wanted}{detail}, got exit status {completed.returncode}"
            print(f"   DEMO CHECK FAILED: {message}", flush=True)
            self.failed.append(f"{shlex.join(completed.args)}: {message}")


def show(argv: list[str], env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Print a command as a user would type it, run it, and print what it printed."""
    print(f"$ {shlex.join(argv)}", flush=True)
    started = time.monotonic()
    completed = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    elapsed = time.monotonic() - started
    for stream in (completed.stdout, completed.stderr):
        if stream.strip():
            print(stream.rstrip())
    print(f"   (exit status {completed.returncode}, {elapsed * 1000:.0f} ms)", flush=True)
    return completed


def main() -> int:
    if os.geteuid() != 0:
        print("demo: run as root (it creates network namespaces and nftables tables)", file=sys.stderr)
        return 1
    with (
        Lab(prefix="rtl-") as lab,
        tempfile.TemporaryDirectory(prefix="runta-demo-") as work,
        tempfile.TemporaryDirectory(prefix="runta-demo-ca-") as ca_directory,
    ):
        say("Test internet: DNS at 198.51.100.53, HTTPS sites with a test CA")
        lab.add_host("pypi.org", v4=["192.0.2.10"], v6=["2001:db8::10"])
        lab.add_host("files.pythonhosted.org", v4=["192.0.2.11"], v6=["2001:db8::11"])
        lab.add_host("api.openai.com", v4=["192.0.2.12"])
        lab.add_host("example.com", v4=["198.51.100.7"], v6=["2001:db8::7"])
        print("pypi.org, files.pythonhosted.org, api.openai.com, example.com")

        daemon = RuntadProcess(lab, Path(work))
        daemon.start()
        expectations = Expectations()
        try:
            run_demo(lab, daemon, expectations, Path(ca_directory))
        finally:
            daemon.close()
            say("Cleaned up: runtad stopped, sandbox and namespaces deleted")
    if expectations.failed:
        print("\ndemo: failed, these steps did not give the result the README shows:", file=sys.stderr)
        for failure in expectations.failed:
            print(f"  {failure}", file=sys.stderr)
        return 1
    return 0


def readable_ca(lab: Lab, directory: Path) -> Path:
    """Copy the lab's CA where a sandbox's default user (nobody on the host) can read it."""
    os.chmod(directory, 0o755)
    target = directory / "ca.pem"
    shutil.copyfile(lab.ca_cert_path, target)
    os.chmod(target, 0o644)
    return target


def run_demo(lab: Lab, daemon: RuntadProcess, expect: Expectations, ca_directory: Path) -> None:
    env = {**os.environ, "RUNTA_SOCKET": str(daemon.socket_path)}
    runta = [str(REPO_ROOT / ".venv" / "bin" / "runta")]
    say(f"runtad is running in namespace {lab.host_netns} (socket {daemon.socket_path})")

    say("Create a sandbox")
    show([*runta, "sandbox", "create", SANDBOX], env)
    daemon.sandboxes.add(SANDBOX)

    say("The documentation's commands")
    show([*runta, "egress", "allow", SANDBOX, "pypi.org", "*.pythonhosted.org", "api.openai.com"], env)
    show([*runta, "egress", "enable", SANDBOX], env)
    show([*runta, "egress", "table", SANDBOX], env)

    say("A URL is not a host name: the error shows the host to use")
    show([*runta, "egress", "allow", SANDBOX, "https://pypi.org/simple"], env)

    say("Inside the sandbox: allowed hosts work, everything else fails at once")
    in_sandbox = [*runta, "sandbox", "exec", SANDBOX, "--", "env", "-i", f"PATH={CLEAN_PATH}"]
    ca = readable_ca(lab, ca_directory)
    curl = ["curl", "-sS", "--max-time", "10", "--cacert", str(ca), "-o", "/dev/null",
            "-w", "%{http_code} from %{remote_ip}\\n"]
    expect.check(show([*in_sandbox, *curl, "https://pypi.org/simple/"], env), True, "200 from 192.0.2.10")
    expect.check(show([*in_sandbox, *curl, "-6", "https://files.pythonhosted.org/"], env), True, "200 from 2001:db8::11")
    expect.check(show([*in_sandbox, *curl, "https://example.com/"], env), False)
    expect.check(show([*in_sandbox, *curl, "https://198.51.100.7/"], env), False)
    expect.check(show([*in_sandbox, "dig", "+short", "@192.0.2.99", "pypi.org"], env), True, "192.0.2.10")

    say("The table now shows the addresses the sandbox's own DNS answers added")
    show([*runta, "egress", "table", SANDBOX], env)

    say("Disable: unrestricted again")
    show([*runta, "egress", "disable", SANDBOX], env)
    expect.check(show([*in_sandbox, *curl, "https://example.com/"], env), True, "200 from 198.51.100.7")


if __name__ == "__main__":
    sys.exit(main())
