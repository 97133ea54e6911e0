"""The JS SDK against a real runtad: node's test runner on sdk/js/test/e2e/.

One node run per module. It gets RUNTA_SOCKET and RUNTA_TEST_RUNTIME pointing at the
daemon and a sandbox prepared here (pypi.org allowed, enforcement on, one denied DNS
lookup so that the audit snippets have an event to print). Each test below checks one
group of the node subtests in that run's TAP output.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.runtad_process import REPO_ROOT, RuntadProcess

pytestmark = pytest.mark.root

JS_E2E_DIR = REPO_ROOT / "sdk" / "js" / "test" / "e2e"
DENIED_HOST = "example.com"
NODE_TIMEOUT_SECONDS = 300

# "ok 3 - name", "not ok 3 - name" or "ok 3 - name # SKIP reason", at any nesting depth.
TAP_RESULT = re.compile(r"^\s*(not ok|ok) \d+ - (.*?)(?: # SKIP ?(.*))?$")

SNIPPET_TESTS = (
    "allow then enable",
    "allowed hosts resolve in the lab",
    "list prints host array",
    "disable turns enforcement off",
    "update policy replaces list",
)
AUDIT_TESTS = ("audit prints denied event", "audits list prints egress payloads")
ERROR_TESTS = (
    "unknown runtime is NotFoundError",
    "raw url is InvalidHostError",
    "stale if-match is VersionConflictError",
    "public suffix wildcard is PublicSuffixWildcardError",
    "bad runtime name is InvalidNameError",
    "existing runtime is AlreadyExistsError",
    "missing netns is NetnsNotFoundError",
)


@dataclass(frozen=True)
class SubtestResult:
    passed: bool
    skip_reason: str | None


@dataclass(frozen=True)
class NodeRun:
    returncode: int
    output: str
    results: dict[str, SubtestResult]

    def result(self, name: str) -> SubtestResult:
        assert name in self.results, f"node reported no subtest {name!r}:\n{self.output}"
        return self.results[name]


def parse_tap(output: str) -> dict[str, SubtestResult]:
    results = {}
    for line in output.splitlines():
        match = TAP_RESULT.match(line)
        if match is not None:
            status, name, skip_reason = match.groups()
            results[name] = SubtestResult(passed=status == "ok", skip_reason=skip_reason)
    return results


def find_node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the JS SDK needs Node 18 or later")
    return node


@pytest.fixture(scope="module")
def node_run(runtad: RuntadProcess) -> NodeRun:
    node = find_node()
    sandbox = runtad.create_sandbox()
    assert sandbox.post("allow", ["pypi.org"]).status_code == 200
    assert sandbox.post("enable").status_code == 200
    answer = sandbox.dig(DENIED_HOST, "A")
    assert "status: NXDOMAIN" in answer.stdout, answer.stdout + answer.stderr

    env = {
        **os.environ,
        "RUNTA_SOCKET": str(runtad.socket_path),
        "RUNTA_TEST_RUNTIME": sandbox.name,
        "RUNTA_TEST_DENIED_HOST": DENIED_HOST,
    }
    completed = subprocess.run(
        [node, "--test", "--test-reporter=tap", str(JS_E2E_DIR)],
        capture_output=True,
        check=False,
        text=True,
        timeout=NODE_TIMEOUT_SECONDS,
        cwd=str(REPO_ROOT),
        env=env,
    )
    output = completed.stdout + completed.stderr
    return NodeRun(completed.returncode, output, parse_tap(completed.stdout))


def test_js_e2e_exit_code(node_run: NodeRun) -> None:
    assert node_run.returncode == 0, node_run.output


def test_js_docs_snippets(node_run: NodeRun) -> None:
    for name in SNIPPET_TESTS:
        result = node_run.result(name)
        assert result.skip_reason is None, f"{name}: skipped ({result.skip_reason})"
        assert result.passed, f"{name} failed:\n{node_run.output}"


def test_js_audit_snippets(node_run: NodeRun) -> None:
    results = [node_run.result(name) for name in AUDIT_TESTS]
    skipped = [result.skip_reason for result in results if result.skip_reason is not None]
    if skipped:
        pytest.skip(skipped[0])
    for name, result in zip(AUDIT_TESTS, results):
        assert result.passed, f"{name} failed:\n{node_run.output}"


def test_js_typed_errors(node_run: NodeRun) -> None:
    for name in ERROR_TESTS:
        result = node_run.result(name)
        assert result.skip_reason is None, f"{name}: skipped ({result.skip_reason})"
        assert result.passed, f"{name} failed:\n{node_run.output}"


def test_parse_tap_reads_skip() -> None:
    output = "    ok 6 - audit prints denied event # SKIP runtad serves no audit routes yet\n"
    assert parse_tap(output) == {
        "audit prints denied event": SubtestResult(True, "runtad serves no audit routes yet")
    }


def test_parse_tap_reads_failure() -> None:
    assert parse_tap("not ok 2 - list prints host array\n") == {
        "list prints host array": SubtestResult(False, None)
    }


def test_js_e2e_dir_exists() -> None:
    assert Path(JS_E2E_DIR, "docs.e2e.test.mjs").is_file()
