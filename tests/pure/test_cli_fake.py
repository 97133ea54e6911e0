"""The runta CLI against the fake runtad API on a unix socket."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import runta.cli_events
import runta.cli_exec
import runta.cli_output
from runta import __version__
from runta.cli import main
from tests.fakes.api_server import FIXED_NOW, FakeRuntad, serve_fake_runtad
from tests.pure.test_sdk_fake import keep_inspect_in_fake


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def socket_path() -> Iterator[Path]:
    # A short directory under /tmp: unix socket paths are limited to 107 bytes.
    directory = tempfile.mkdtemp(prefix="runta-cli-", dir="/tmp")
    yield Path(directory) / "runtad.sock"
    shutil.rmtree(directory)


@pytest.fixture
def fake(socket_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRuntad]:
    monkeypatch.setenv("RUNTA_SOCKET", str(socket_path))
    monkeypatch.setattr(runta.cli_output, "utc_now", lambda: FIXED_NOW)
    keep_inspect_in_fake(monkeypatch)
    with serve_fake_runtad(socket_path) as server:
        server.add_runtime("worker")
        yield server


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Result:
    code = main(list(argv))
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


@pytest.fixture
def tools(monkeypatch: pytest.MonkeyPatch) -> dict[str, str | None]:
    """Fixed tool paths for `sandbox exec`, so the argv does not depend on this machine."""
    paths: dict[str, str | None] = {
        "ip": "/usr/sbin/ip", "nsenter": "/usr/bin/nsenter", "setpriv": "/usr/bin/setpriv",
        "unshare": "/usr/bin/unshare",
    }
    monkeypatch.setattr(runta.cli_exec.shutil, "which", lambda name: paths.get(name))
    return paths


SETPRIV = [
    "/usr/bin/setpriv",
    "--no-new-privs",
    "--inh-caps=-all",
    "--bounding-set=-net_admin,-net_raw,-sys_admin,-sys_module,-sys_ptrace,-bpf",
]
# Without --user: root of a user namespace of its own, nobody on the host.
AS_NAMESPACE_ROOT = [
    *SETPRIV, "--reuid=nobody", "--regid=65534", "--init-groups",
    "--", "/usr/bin/unshare", "--user", "--map-root-user",
]


# Sandbox commands.


def test_sandbox_create_summary(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "sandbox", "create", "builder")

    assert result.code == 0
    assert result.out == (
        "builder: created netns /run/netns/runta-builder, addresses 10.213.0.10/30\n"
    )
    assert "builder" in fake.runtimes


def test_sandbox_create_adopt_json(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "sandbox", "create", "adopted", "--netns", "existing", "--json")

    assert result.code == 0
    assert json.loads(result.out) == fake.runtimes["adopted"].to_json()
    assert fake.requests[-1].body == {"name": "adopted", "netns": "existing"}


def test_sandbox_create_missing_netns(
    fake: FakeRuntad, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(capsys, "sandbox", "create", "other", "--netns", "nowhere")

    assert result.code == 1
    assert result.err.startswith("runta: error: network namespace 'nowhere' not found")


def test_sandbox_list_table(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    fake.runtimes["worker"].enabled = True

    result = run_cli(capsys, "sandbox", "list")

    lines = result.out.splitlines()
    assert result.code == 0
    assert lines[0].split() == ["NAME", "NETNS", "ADOPTED", "ENFORCEMENT", "ADDRESSES"]
    assert lines[1].split() == ["worker", "/run/netns/runta-worker", "no", "on", "10.213.0.6/30"]


def test_sandbox_list_json(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "sandbox", "list", "--json")

    assert json.loads(result.out) == {"items": [fake.runtimes["worker"].to_json()]}


def test_sandbox_delete(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "sandbox", "delete", "worker")

    assert result.code == 0
    assert result.out == "worker: deleted\n"
    assert fake.runtimes == {}


def test_sandbox_delete_missing(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "sandbox", "delete", "ghost")

    assert result.code == 1
    assert result.out == ""
    assert result.err == (
        "runta: error: runtime 'ghost' not found: list runtimes with `runta sandbox list`\n"
    )


# Sandbox exec.


def test_exec_run_netns_argv(
    fake: FakeRuntad, tools: dict[str, str | None], capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(capsys, "sandbox", "exec", "worker", "--dry-run", "--json", "--", "ls", "-l")

    assert result.code == 0
    assert json.loads(result.out) == [
        "/usr/sbin/ip", "netns", "exec", "runta-worker", *AS_NAMESPACE_ROOT, "--", "ls", "-l"
    ]


def test_exec_other_path_argv(
    fake: FakeRuntad, tools: dict[str, str | None], capsys: pytest.CaptureFixture[str]
) -> None:
    run_cli(capsys, "sandbox", "create", "adopted", "--netns", "/proc/4242/ns/net")

    result = run_cli(capsys, "sandbox", "exec", "adopted", "--dry-run", "--json", "--", "id")

    assert json.loads(result.out) == [
        "/usr/bin/nsenter", "--net=/proc/4242/ns/net", *AS_NAMESPACE_ROOT, "--", "id"
    ]


def test_exec_user_argv(
    fake: FakeRuntad, tools: dict[str, str | None], capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(
        capsys, "sandbox", "exec", "worker", "--user", "nobody", "--dry-run", "--json",
        "--", "sh", "-c", "id",
    )

    argv = json.loads(result.out)
    assert argv[4:] == [
        *SETPRIV, "--reuid=nobody", "--regid=65534", "--init-groups", "--", "sh", "-c", "id"
    ]


def test_exec_dry_run_text(
    fake: FakeRuntad, tools: dict[str, str | None], capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(
        capsys, "sandbox", "exec", "worker", "--host-root", "--dry-run", "--", "sh", "-c", "a b"
    )

    assert result.out.startswith("/usr/sbin/ip netns exec runta-worker /usr/bin/setpriv ")
    assert result.out.endswith(" -- sh -c 'a b'\n")


def test_exec_without_setpriv(
    fake: FakeRuntad, tools: dict[str, str | None], capsys: pytest.CaptureFixture[str]
) -> None:
    tools["setpriv"] = None

    result = run_cli(capsys, "sandbox", "exec", "worker", "--dry-run", "--", "id")

    assert result.code == 1
    assert "setpriv not found" in result.err
    assert "util-linux" in result.err


def test_exec_unknown_user(
    fake: FakeRuntad, tools: dict[str, str | None], capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(
        capsys, "sandbox", "exec", "worker", "--user", "no-such-user-x", "--dry-run", "--", "id"
    )

    assert result.code == 1
    assert "user 'no-such-user-x' not found" in result.err


def test_exec_requires_command(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "sandbox", "exec", "worker")

    assert result.code == 2


# Egress writes.


def test_allow_summary(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(
        capsys, "egress", "allow", "worker", "pypi.org", "*.pythonhosted.org", "api.openai.com"
    )

    assert result.code == 0
    assert result.out == "worker: enforcement off, 3 allowed hosts (version 2)\n"
    assert result.err == ""


def test_allow_json_after_hosts(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "egress", "allow", "worker", "pypi.org", "--json")

    assert json.loads(result.out) == fake.runtimes["worker"].egress_json()


def test_allow_json_before_positionals(
    fake: FakeRuntad, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(capsys, "egress", "allow", "--json", "worker", "pypi.org")

    assert json.loads(result.out)["allowed_hosts"] == ["pypi.org"]


def test_allow_json_before_command(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "--json", "egress", "allow", "worker", "pypi.org")

    assert json.loads(result.out)["version"] == 2


def test_allow_url_not_normalized(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "egress", "allow", "worker", "https://pypi.org/simple")

    assert result.code == 1
    assert result.out == ""
    assert result.err.startswith("runta: error: invalid host 'https://pypi.org/simple'")
    assert "use pypi.org instead" in result.err
    assert fake.requests[-1].body == {"hosts": ["https://pypi.org/simple"]}
    assert fake.runtimes["worker"].allowed_hosts == []


@pytest.mark.parametrize(
    "entry", ["pypi.org:443", "https://pypi.org", "pypi.org/simple", "pypi.org?x=1"]
)
def test_allow_rejects_url_forms(
    fake: FakeRuntad, capsys: pytest.CaptureFixture[str], entry: str
) -> None:
    result = run_cli(capsys, "egress", "allow", "worker", entry)

    assert result.code == 1
    assert fake.requests[-1].body == {"hosts": [entry]}


def test_allow_public_suffix_force(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    rejected = run_cli(capsys, "egress", "allow", "worker", "*.com")
    forced = run_cli(capsys, "egress", "allow", "worker", "*.com", "--force")

    assert rejected.code == 1
    assert "send force" in rejected.err
    assert forced.code == 0
    assert fake.requests[-1].body == {"hosts": ["*.com"], "force": True}


def test_allow_unresolved_warns(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "egress", "allow", "worker", "pypi.org", "no-such-host.invalid")

    assert result.code == 0
    assert result.err.startswith("runta: warning: worker: 1 allowed host without addresses")
    assert "no-such-host.invalid" in result.err


def test_allow_if_version_conflict(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "egress", "allow", "worker", "pypi.org", "--if-version", "9")

    assert result.code == 1
    assert fake.requests[-1].headers["If-Match"] == "9"
    assert "If-Match 9" in result.err


def test_remove_summary(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    run_cli(capsys, "egress", "allow", "worker", "pypi.org", "api.openai.com")

    result = run_cli(capsys, "egress", "remove", "worker", "pypi.org")

    assert result.code == 0
    assert result.out == "worker: enforcement off, 1 allowed host (version 3)\n"


def test_remove_absent_host(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "egress", "remove", "worker", "pypi.org")

    assert result.code == 1
    assert result.err == (
        "runta: error: host 'pypi.org' is not in the allowlist of runtime 'worker'\n"
    )


def test_enable_disable_summary(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    enabled = run_cli(capsys, "egress", "enable", "worker")
    disabled = run_cli(capsys, "egress", "disable", "worker", "--json")

    assert enabled.out == "worker: enforcement on, 0 allowed hosts (version 2)\n"
    assert json.loads(disabled.out)["enabled"] is False
    assert fake.runtimes["worker"].enabled is False


def test_egress_unknown_sandbox(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "egress", "enable", "ghost")

    assert result.code == 1
    assert "runtime 'ghost' not found" in result.err


# Egress table.


def test_table_rows(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    run_cli(capsys, "egress", "allow", "worker", "pypi.org", "*.pythonhosted.org")
    run_cli(capsys, "egress", "enable", "worker")

    result = run_cli(capsys, "egress", "table", "worker")

    lines = result.out.splitlines()
    assert result.code == 0
    assert lines[0] == "enforcement: on  inspect: first  version: 3"
    assert lines[1].split() == ["HOST", "KIND", "STATUS", "ADDRESS", "SOURCE", "EXPIRES"]
    assert lines[2].split() == [
        "pypi.org", "exact", "resolved", "192.0.2.10", "resolver", "5m00s", "(2026-12-04", "20:15:00", "UTC)"
    ]
    assert lines[3].split()[3] == "2001:db8::a"
    assert lines[4].split() == ["*.pythonhosted.org", "wildcard", "wildcard", "-", "-", "-"]
    assert len(lines) == 5
    assert result.err == ""


def test_table_unresolved_warning(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    run_cli(capsys, "egress", "allow", "worker", "no-such-host.invalid")

    result = run_cli(capsys, "egress", "table", "worker")

    assert result.out.splitlines()[2].split() == [
        "no-such-host.invalid", "exact", "unresolved", "-", "-", "-"
    ]
    assert result.err.startswith("runta: warning: worker: 1 allowed host without addresses")


def test_table_empty(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "egress", "table", "worker")

    assert result.out == "enforcement: off  inspect: first  version: 1\nno allowed hosts\n"


def test_table_json_both_positions(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    run_cli(capsys, "egress", "allow", "worker", "pypi.org")

    after = run_cli(capsys, "egress", "table", "worker", "--json")
    before = run_cli(capsys, "egress", "table", "--json", "worker")

    assert json.loads(after.out) == fake.runtimes["worker"].egress_json()
    assert after.out == before.out


def test_table_shows_strict_inspect(
    fake: FakeRuntad, capsys: pytest.CaptureFixture[str]
) -> None:
    run_cli(capsys, "egress", "inspect", "worker", "all")

    result = run_cli(capsys, "egress", "table", "worker")

    assert result.out.splitlines()[0] == "enforcement: off  inspect: all  version: 2"


# Egress inspect.


def test_inspect_shows_mode(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "egress", "inspect", "worker")

    assert result.code == 0
    assert result.out == "worker: inspect first, enforcement off, 0 allowed hosts (version 1)\n"
    assert result.err == ""
    assert [r.method for r in fake.requests] == ["GET"]


def test_inspect_sets_all(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    run_cli(capsys, "egress", "allow", "worker", "pypi.org")
    run_cli(capsys, "egress", "enable", "worker")

    result = run_cli(capsys, "egress", "inspect", "worker", "all")

    assert result.code == 0
    assert result.out == "worker: inspect all, enforcement on, 1 allowed host (version 4)\n"
    assert result.err == ""
    assert fake.requests[-1].method == "PATCH"
    assert fake.requests[-1].body == {"inspect": "all"}


def test_inspect_sets_first_back(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    run_cli(capsys, "egress", "inspect", "worker", "all")

    result = run_cli(capsys, "egress", "inspect", "worker", "first")
    current = run_cli(capsys, "egress", "inspect", "worker")

    assert result.out.startswith("worker: inspect first, ")
    assert fake.requests[-2].body == {"inspect": "first"}
    assert current.out.startswith("worker: inspect first, ")


def test_inspect_all_while_off_warns(
    fake: FakeRuntad, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(capsys, "egress", "inspect", "worker", "all")

    assert result.code == 0
    assert result.err == (
        "runta: warning: worker: enforcement is off, so the gateway inspects no connection "
        "until you run 'runta egress enable worker'\n"
    )


def test_inspect_show_does_not_warn(
    fake: FakeRuntad, capsys: pytest.CaptureFixture[str]
) -> None:
    run_cli(capsys, "egress", "inspect", "worker", "all")

    result = run_cli(capsys, "egress", "inspect", "worker")

    assert result.out.startswith("worker: inspect all, enforcement off")
    assert result.err == ""


def test_inspect_json(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    set_result = run_cli(capsys, "egress", "inspect", "worker", "all", "--json")
    current = run_cli(capsys, "--json", "egress", "inspect", "worker")

    assert json.loads(set_result.out) == fake.runtimes["worker"].egress_json()
    assert json.loads(set_result.out)["inspect"] == "all"
    assert set_result.err == ""
    assert current.out == set_result.out


def test_inspect_bad_mode_usage(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "egress", "inspect", "worker", "strict")

    assert result.code == 2
    assert "invalid choice: 'strict'" in result.err
    assert "'first', 'all'" in result.err
    assert fake.requests == []


def test_inspect_if_version_conflict(
    fake: FakeRuntad, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(capsys, "egress", "inspect", "worker", "all", "--if-version", "9")

    assert result.code == 1
    assert fake.requests[-1].headers["If-Match"] == "9"
    assert "If-Match 9" in result.err
    assert fake.runtimes["worker"].inspect == "first"  # type: ignore[attr-defined]


def test_inspect_if_version_needs_mode(
    fake: FakeRuntad, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(capsys, "egress", "inspect", "worker", "--if-version", "1")

    assert result.code == 2
    assert "--if-version applies only when setting a mode" in result.err
    assert fake.requests == []


def test_inspect_unknown_sandbox(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "egress", "inspect", "ghost", "all")

    assert result.code == 1
    assert "runtime 'ghost' not found" in result.err


def test_remaining_time_format() -> None:
    later = FIXED_NOW.replace(hour=21, minute=12, second=3)

    assert runta.cli_output.format_remaining(later, FIXED_NOW) == "1h02m03s"
    assert runta.cli_output.format_remaining(FIXED_NOW, FIXED_NOW) == "expired"
    assert runta.cli_output.format_remaining(FIXED_NOW.replace(second=9), FIXED_NOW) == "9s"


# Events and audits.


def test_events_sandbox_table(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    fake.add_event(
        "worker", host="example.com", address="198.51.100.7", port=443, protocol="tcp",
        reason="sni not in allowlist",
    )
    fake.add_event("worker", host="other.test", path="/x", count=3)

    result = run_cli(capsys, "egress", "events", "--sandbox", "worker", "--limit", "20")

    lines = result.out.splitlines()
    assert fake.requests[-1].query == {"limit": "20"}
    assert lines[0].split() == [
        "TIME", "SANDBOX", "ACTION", "HOST", "DESTINATION", "REASON", "PATH", "COUNT"
    ]
    assert lines[1].split()[1:5] == ["worker", "deny", "example.com", "198.51.100.7:443/tcp"]
    assert lines[2].split()[-2:] == ["/x", "3"]


DENIAL_MESSAGE = (
    "example.com is not in the allowlist of sandbox worker, so the connection was denied."
    " To allow it, run 'runta egress allow worker example.com'."
)


def test_events_message_under_row(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    fake.add_event("worker", host="example.com", reason="sni_not_allowed", message=DENIAL_MESSAGE)
    fake.add_event("worker", host="other.test", message=None)
    fake.add_event("worker", host="third.test", message="third.test was denied.")

    result = run_cli(capsys, "egress", "events", "--sandbox", "worker")

    lines = result.out.splitlines()
    assert lines[0].split()[0] == "TIME"
    assert lines[1].split()[3] == "example.com"
    assert lines[2] == "    " + DENIAL_MESSAGE
    assert lines[3].split()[3] == "other.test"
    assert lines[4].split()[3] == "third.test"
    assert lines[5] == "    third.test was denied."
    assert len(lines) == 6


def test_events_rows_stay_aligned(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    fake.add_event("worker", host="a.test", message="short")
    fake.add_event("worker", host="a-much-longer-name.test", message="longer")

    result = run_cli(capsys, "egress", "events", "--sandbox", "worker")

    lines = result.out.splitlines()
    reason_column = lines[0].index("REASON")
    assert lines[1][reason_column - 1 : reason_column + 2] == " - "
    assert lines[2] == "    short"
    assert lines[3][reason_column - 1 : reason_column + 2] == " - "
    assert lines[4] == "    longer"


def test_events_escape_control_characters(
    fake: FakeRuntad, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.add_event(
        "worker", host="evil\x1b[2J.test", path="/a\nb", message="line one\nline\x1b]0;two"
    )

    result = run_cli(capsys, "egress", "events", "--sandbox", "worker")

    lines = result.out.splitlines()
    assert "\x1b" not in result.out
    assert "evil\\x1b[2J.test" in lines[1]
    assert "/a\\nb" in lines[1]
    assert lines[2] == "    line one\\nline\\x1b]0;two"
    assert len(lines) == 3


def test_events_json_keeps_message(
    fake: FakeRuntad, capsys: pytest.CaptureFixture[str]
) -> None:
    event = fake.add_event("worker", host="example.com", message=DENIAL_MESSAGE)

    result = run_cli(capsys, "egress", "events", "--sandbox", "worker", "--json")

    assert [json.loads(line) for line in result.out.splitlines()] == [
        {**event, "runtime": "worker"}
    ]


def test_events_json_lines(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    first = fake.add_event("worker", host="a.test")
    second = fake.add_event("worker", host="b.test")

    result = run_cli(capsys, "egress", "events", "--sandbox", "worker", "--json")

    documents = [json.loads(line) for line in result.out.splitlines()]
    assert documents == [{**first, "runtime": "worker"}, {**second, "runtime": "worker"}]


def test_events_all_sandboxes(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    fake.add_runtime("builder")
    fake.add_event("worker", host="a.test")
    fake.add_event("builder", host="b.test")

    result = run_cli(capsys, "egress", "events")

    assert fake.requests[-1].path == "/v1/audits"
    assert fake.requests[-1].query == {"category": "egress"}
    assert [line.split()[1:4] for line in result.out.splitlines()[1:]] == [
        ["worker", "deny", "a.test"], ["builder", "deny", "b.test"]
    ]


def stop_after_polls(
    monkeypatch: pytest.MonkeyPatch, on_poll: Callable[[int], object], polls: int
) -> list[float]:
    """Replace the watcher's sleep: call ``on_poll(n)`` at the n-th sleep, stop after ``polls``."""
    slept: list[float] = []

    def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) > polls:
            raise KeyboardInterrupt
        on_poll(len(slept))

    monkeypatch.setattr(runta.cli_events, "sleep", fake_sleep)
    return slept


def event_queries(fake: FakeRuntad) -> list[dict[str, str]]:
    return [r.query for r in fake.requests if r.path.endswith("/events")]


def test_events_watch_prints_once(
    fake: FakeRuntad, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.add_event("worker", host="a.test", id=1)
    slept = stop_after_polls(
        monkeypatch, lambda poll: fake.add_event("worker", host="b.test", id=2), polls=1
    )

    result = run_cli(
        capsys, "egress", "events", "--sandbox", "worker", "--watch", "--interval", "5", "--json"
    )

    hosts = [json.loads(line)["host"] for line in result.out.splitlines()]
    assert result.code == 0
    assert hosts == ["a.test", "b.test"]
    assert slept == [5.0, 5.0]
    assert event_queries(fake) == [
        {"order": "desc"}, {"after": "1", "order": "asc"}, {"after": "2", "order": "asc"}
    ]


def test_events_watch_starts_at_newest(
    fake: FakeRuntad, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for number, host in enumerate(["a.test", "b.test", "c.test", "d.test"], start=1):
        fake.add_event("worker", host=host, id=number)
    stop_after_polls(
        monkeypatch, lambda poll: fake.add_event("worker", host="e.test", id=5), polls=1
    )

    result = run_cli(
        capsys, "egress", "events", "--sandbox", "worker", "--watch", "--limit", "2", "--json"
    )

    hosts = [json.loads(line)["host"] for line in result.out.splitlines()]
    assert hosts == ["c.test", "d.test", "e.test"]
    assert event_queries(fake)[:2] == [
        {"limit": "2", "order": "desc"}, {"after": "4", "limit": "2", "order": "asc"}
    ]


def test_events_watch_pages_through_burst(
    fake: FakeRuntad, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def add_burst(poll: int) -> None:
        for number in range(1, 6):
            fake.add_event("worker", host=f"burst{number}.test", id=number)

    stop_after_polls(monkeypatch, add_burst, polls=1)

    result = run_cli(
        capsys, "egress", "events", "--sandbox", "worker", "--watch", "--limit", "2", "--json"
    )

    hosts = [json.loads(line)["host"] for line in result.out.splitlines()]
    assert hosts == [f"burst{number}.test" for number in range(1, 6)]
    assert [q.get("after") for q in event_queries(fake)] == [None, None, "2", "4"]


def test_events_watch_text_messages(
    fake: FakeRuntad, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.add_event("worker", host="a.test", id=1, message="a.test was denied.")
    stop_after_polls(
        monkeypatch,
        lambda poll: fake.add_event("worker", host="b.test", id=2, message="b.test was denied."),
        polls=1,
    )

    result = run_cli(capsys, "egress", "events", "--sandbox", "worker", "--watch")

    lines = result.out.splitlines()
    assert lines[0].split()[0] == "TIME"
    assert lines[1].split()[3] == "a.test"
    assert lines[2] == "    a.test was denied."
    assert lines[3].split()[3] == "b.test"
    assert lines[4] == "    b.test was denied."
    assert len(lines) == 5


def test_events_watch_all_sandboxes(
    fake: FakeRuntad, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.add_runtime("builder")
    fake.add_event("worker", host="a.test")
    fake.add_event("builder", host="b.test")
    stop_after_polls(
        monkeypatch, lambda poll: fake.add_event("builder", host="c.test"), polls=1
    )

    result = run_cli(capsys, "egress", "events", "--watch", "--limit", "1", "--json")

    documents = [json.loads(line) for line in result.out.splitlines()]
    assert [(d["runtime"], d["host"]) for d in documents] == [
        ("builder", "b.test"), ("builder", "c.test")
    ]
    audit_queries = [r.query for r in fake.requests if r.path == "/v1/audits"]
    assert audit_queries[:2] == [
        {"category": "egress", "limit": "1", "order": "desc"},
        {"category": "egress", "limit": "1", "order": "asc", "after": "2"},
    ]


def test_events_watch_empty_start(
    fake: FakeRuntad, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stop_after_polls(
        monkeypatch, lambda poll: fake.add_event("worker", host="a.test", id=1), polls=1
    )

    result = run_cli(
        capsys, "egress", "events", "--sandbox", "worker", "--watch", "--json"
    )

    assert [json.loads(line)["host"] for line in result.out.splitlines()] == ["a.test"]
    assert event_queries(fake)[:2] == [{"order": "desc"}, {"order": "asc"}]


def test_events_watch_needs_event_ids(
    fake: FakeRuntad, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.add_event("worker", host="a.test")
    slept = stop_after_polls(monkeypatch, lambda poll: None, polls=1)

    result = run_cli(capsys, "egress", "events", "--sandbox", "worker", "--watch", "--json")

    assert result.code == 1
    assert "event without an id" in result.err
    assert slept == []


def test_events_watch_bad_interval(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "egress", "events", "--watch", "--interval", "0")

    assert result.code == 2
    assert "more than 0 seconds" in result.err


def test_audits_list_table(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    fake.add_event("worker", host="a.test")

    result = run_cli(
        capsys, "audits", "list", "--runtime", "worker", "--category", "egress", "--limit", "5"
    )

    lines = result.out.splitlines()
    assert fake.requests[-1].query == {"runtime": "worker", "category": "egress", "limit": "5"}
    assert lines[0].split() == ["TIME", "SANDBOX", "CATEGORY", "ID", "PAYLOAD"]
    assert lines[1].split()[1:4] == ["worker", "egress", "1"]
    assert '"host":"a.test"' in lines[1]


def test_audits_list_json(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    fake.add_event("worker", host="a.test")

    result = run_cli(capsys, "audits", "list", "--json")

    assert json.loads(result.out) == {"items": fake.audits, "next": None}


# Socket, exit codes and usage.


def test_missing_socket_exit_69(
    socket_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RUNTA_SOCKET", str(socket_path))

    result = run_cli(capsys, "sandbox", "list")

    assert result.code == 69
    assert result.err.startswith(f"runta: error: cannot reach runtad on {socket_path}")
    assert "--socket" in result.err


def test_socket_option_beats_env(
    fake: FakeRuntad, socket_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RUNTA_SOCKET", "/tmp/runta-no-such-dir/runtad.sock")

    before = run_cli(capsys, "--socket", str(socket_path), "sandbox", "list")
    after = run_cli(capsys, "sandbox", "list", "--socket", str(socket_path))

    assert before.code == 0
    assert after.code == 0


def test_env_socket_used(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "sandbox", "list")

    assert result.code == 0
    assert "worker" in result.out


def test_usage_error_exit_2(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "egress", "allow", "worker")

    assert result.code == 2
    assert "the following arguments are required: HOST" in result.err


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "--version")

    assert result.code == 0
    assert result.out == f"runta {__version__}\n"


def test_status_text(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "status")

    assert result.code == 0
    assert result.out.splitlines()[0].startswith("runtad 0.1.0 on ")


def test_api_error_exit_1(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    fake.fail_next(503, "kernel_apply_failed", "kernel rejected the set update: retry")

    result = run_cli(capsys, "egress", "enable", "worker")

    assert result.code == 1
    assert result.err == "runta: error: kernel rejected the set update: retry\n"


def test_events_sandbox_positional(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    fake.add_runtime("other")
    fake.add_event("worker", host="example.com", message=None)
    fake.add_event("other", host="other.test", message=None)

    result = run_cli(capsys, "egress", "events", "worker")

    assert "example.com" in result.out
    assert "other.test" not in result.out


def test_events_two_sandboxes_rejected(fake: FakeRuntad, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "egress", "events", "worker", "--sandbox", "other")

    assert result.code == 2
    assert "'worker'" in result.err
    assert "'other'" in result.err
