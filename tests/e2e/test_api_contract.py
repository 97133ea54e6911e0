"""The REST contract against a real runtad: every route, its errors, and the OpenAPI document.

Each response is checked against the schema that GET /v1/openapi.json documents for its
operation and status. The last test runs Schemathesis over that document and fails on
any 5xx or response that the document does not describe.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema_rs
import pytest
import requests
import schemathesis
import urllib3
from hypothesis import HealthCheck, settings
from requests.adapters import HTTPAdapter
from schemathesis import checks as schemathesis_checks

from runtad.openapi import build_document
from tests.e2e.runtad_process import RuntadProcess, SandboxHandle

pytestmark = pytest.mark.root

BASE_URL = "http://runtad/v1"
# An audit event is stored within the fold window (2 s by default) plus the writer's turn.
STORED_WITHIN = 6.0
CONCURRENT_CALLS = 50
FUZZ_RUNTIME = "fuzz"
FUZZ_EXAMPLES = 200
# Milliseconds one generated request may take. A write waits for its new hosts to
# resolve (resolve_wait, 3 s by default), which the lab's DNS server answers at once.
FUZZ_DEADLINE_MS = 5000
FUZZ_CHECKS = [
    schemathesis_checks.not_a_server_error,
    schemathesis_checks.status_code_conformance,
    schemathesis_checks.content_type_conformance,
    schemathesis_checks.response_schema_conformance,
    schemathesis_checks.unsupported_method,
]


# --- the document and its schemas ------------------------------------------------------


class Contract:
    """Validate responses against the operation and status that the OpenAPI document lists."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def schema_of(self, method: str, path: str, status: int) -> dict[str, Any] | None:
        """Return the JSON schema of a documented response, None for one without a body."""
        operation = self.document["paths"][path][method.lower()]
        response = operation["responses"].get(str(status))
        assert response is not None, f"{method} {path} does not document status {status}"
        if "$ref" in response:
            response = self.document["components"]["responses"][str(status)]
        content = response.get("content")
        if content is None:
            return None
        assert "application/json" in content, f"{method} {path} {status} is not JSON"
        schema: dict[str, Any] = content["application/json"]["schema"]
        return schema

    def check(self, response: httpx.Response, method: str, path: str) -> Any:
        """Assert that the response matches the document and return its decoded body."""
        schema = self.schema_of(method, path, response.status_code)
        if schema is None:
            assert response.content == b""
            return None
        assert response.headers["Content-Type"].startswith("application/json")
        body = response.json()
        rooted = {**schema, "components": self.document["components"]}
        validator = jsonschema_rs.Draft202012Validator(rooted, validate_formats=True)
        problems = [
            f"{list(error.instance_path)}: {error.message}" for error in validator.iter_errors(body)
        ]
        assert problems == [], f"{method} {path} {response.status_code}: {problems}\n{body}"
        return body


def assert_error(
    response: httpx.Response, status: int, code: str, field: str | None = None
) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message", "field"}
    assert error["code"] == code, error
    assert error["field"] == field, error
    assert error["message"], error


@pytest.fixture(scope="module")
def document(runtad: RuntadProcess) -> dict[str, Any]:
    response = runtad.api("GET", "/openapi.json")
    assert response.status_code == 200, response.text
    served: dict[str, Any] = response.json()
    return served


@pytest.fixture(scope="module")
def contract(document: dict[str, Any]) -> Contract:
    return Contract(document)


def raw_client(runtad: RuntadProcess) -> httpx.Client:
    """Return a client for requests that RuntadProcess.api cannot send: raw bodies, byte headers."""
    transport = httpx.HTTPTransport(uds=str(runtad.socket_path))
    return httpx.Client(transport=transport, base_url=BASE_URL, timeout=30)


def write(
    runtad: RuntadProcess,
    method: str,
    name: str,
    action: str,
    body: Any = None,
    if_match: str | None = None,
) -> httpx.Response:
    headers = {"If-Match": if_match} if if_match is not None else None
    suffix = f"/{action}" if action else ""
    return runtad.api(method, f"/runtimes/{name}/egress{suffix}", body, headers)


# --- document -----------------------------------------------------------------------------


def test_openapi_served_is_built_document(document: dict[str, Any]) -> None:
    assert document == build_document()


def test_openapi_version_is_31(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1.")


# --- status and metrics ------------------------------------------------------------------


def test_status_matches_schema(runtad: RuntadProcess, contract: Contract) -> None:
    body = contract.check(runtad.api("GET", "/status"), "GET", "/v1/status")
    assert body["upstream_dns"] == [f"{runtad.lab.dns_address}:53"]


def test_metrics_text_exposition(runtad: RuntadProcess) -> None:
    transport = httpx.HTTPTransport(uds=str(runtad.socket_path))
    with httpx.Client(transport=transport, base_url="http://runtad", timeout=30) as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert "runtad_" in response.text


# --- runtimes -------------------------------------------------------------------------------


def test_runtime_create_returns_201(runtad: RuntadProcess, contract: Contract) -> None:
    name = f"ct{secrets.token_hex(3)}"
    response = runtad.api("POST", "/runtimes", {"name": name})
    runtad.sandboxes.add(name)
    body = contract.check(response, "POST", "/v1/runtimes")
    assert response.status_code == 201
    assert body["name"] == name
    assert body["egress"] == {"enabled": False, "version": 1}


def test_runtime_get_and_list(runtad: RuntadProcess, contract: Contract) -> None:
    sandbox = runtad.create_sandbox()
    got = contract.check(
        runtad.api("GET", f"/runtimes/{sandbox.name}"), "GET", "/v1/runtimes/{name}"
    )
    listed = contract.check(runtad.api("GET", "/runtimes"), "GET", "/v1/runtimes")
    assert got["netns"] == sandbox.netns_path
    assert got in listed["items"]


def test_runtime_delete_returns_204(runtad: RuntadProcess, contract: Contract) -> None:
    sandbox = runtad.create_sandbox()
    deleted = runtad.api("DELETE", f"/runtimes/{sandbox.name}")
    contract.check(deleted, "DELETE", "/v1/runtimes/{name}")
    assert deleted.status_code == 204
    runtad.sandboxes.discard(sandbox.name)
    after = runtad.api("GET", f"/runtimes/{sandbox.name}")
    contract.check(after, "GET", "/v1/runtimes/{name}")
    assert_error(after, 404, "not_found")


def test_failed_runtime_matches_schema(own_runtad: RuntadProcess) -> None:
    contract = Contract(build_document())
    netns = f"{own_runtad.netns_prefix}gone"
    subprocess.run(["ip", "netns", "add", netns], check=True, timeout=10)
    adopted = own_runtad.api("POST", "/runtimes", {"name": "gone", "netns": netns})
    assert adopted.status_code == 201, adopted.text
    own_runtad.stop()
    subprocess.run(["ip", "netns", "del", netns], check=True, timeout=10)
    own_runtad.start()

    listed = contract.check(own_runtad.api("GET", "/runtimes"), "GET", "/v1/runtimes")
    got = own_runtad.api("GET", "/runtimes/gone")
    contract.check(got, "GET", "/v1/runtimes/{name}")
    allowed = own_runtad.api("POST", "/runtimes/gone/egress/allow", {"hosts": ["pypi.org"]})
    contract.check(allowed, "POST", "/v1/runtimes/{name}/egress/allow")
    deleted = own_runtad.api("DELETE", "/runtimes/gone")

    assert listed["items"][0]["state"] == "failed"
    assert listed["items"][0]["egress"] is None
    assert_error(got, 503, "sandbox_unavailable")
    assert_error(allowed, 503, "sandbox_unavailable")
    assert deleted.status_code == 204


def test_create_missing_name(runtad: RuntadProcess, contract: Contract) -> None:
    response = runtad.api("POST", "/runtimes", {})
    contract.check(response, "POST", "/v1/runtimes")
    assert_error(response, 400, "invalid_request", "name")


def test_create_name_wrong_type(runtad: RuntadProcess) -> None:
    assert_error(runtad.api("POST", "/runtimes", {"name": 7}), 400, "invalid_request", "name")


def test_create_unknown_field(runtad: RuntadProcess) -> None:
    response = runtad.api("POST", "/runtimes", {"name": "ctunknown", "colour": "red"})
    assert_error(response, 400, "invalid_request", "colour")


def test_create_invalid_name(runtad: RuntadProcess, contract: Contract) -> None:
    response = runtad.api("POST", "/runtimes", {"name": "Bad/Name"})
    contract.check(response, "POST", "/v1/runtimes")
    assert_error(response, 400, "invalid_name", "name")


def test_create_existing_name(runtad: RuntadProcess, contract: Contract) -> None:
    sandbox = runtad.create_sandbox()
    response = runtad.api("POST", "/runtimes", {"name": sandbox.name})
    contract.check(response, "POST", "/v1/runtimes")
    assert_error(response, 409, "already_exists", "name")


def test_create_missing_netns(runtad: RuntadProcess, contract: Contract) -> None:
    response = runtad.api("POST", "/runtimes", {"name": "ctadopt", "netns": "no-such-netns-here"})
    contract.check(response, "POST", "/v1/runtimes")
    assert_error(response, 422, "netns_not_found", "netns")


@pytest.mark.parametrize("netns", ["a\0b", "/run/netns/a\0b", "\ud800"])
def test_create_netns_not_a_path(runtad: RuntadProcess, netns: str) -> None:
    # json.dumps writes the lone surrogate as the escape \ud800, which JSON allows.
    body = json.dumps({"name": "ctadopt", "netns": netns}).encode()
    with raw_client(runtad) as client:
        response = client.post("/runtimes", content=body)
    assert_error(response, 400, "invalid_request", "netns")


def test_create_body_not_json(runtad: RuntadProcess) -> None:
    with raw_client(runtad) as client:
        response = client.post("/runtimes", content=b"{name: worker}")
    assert_error(response, 400, "invalid_request")


def test_create_body_not_object(runtad: RuntadProcess) -> None:
    assert_error(runtad.api("POST", "/runtimes", ["ctlist"]), 400, "invalid_request")


def test_create_body_nested_too_deep(runtad: RuntadProcess) -> None:
    depth = 100_000
    with raw_client(runtad) as client:
        response = client.post("/runtimes", content=b"[" * depth + b"]" * depth)
    assert_error(response, 400, "invalid_request")


NOT_FOUND_CALLS = [
    ("GET", "", None),
    ("DELETE", "", None),
    ("GET", "/egress", None),
    ("PUT", "/egress", {"enabled": True, "allowed_hosts": []}),
    ("PATCH", "/egress", {}),
    ("POST", "/egress/allow", {"hosts": ["pypi.org"]}),
    ("POST", "/egress/remove", {"hosts": ["pypi.org"]}),
    ("POST", "/egress/enable", None),
    ("POST", "/egress/disable", None),
    ("GET", "/egress/events", None),
]


@pytest.mark.parametrize(("method", "suffix", "body"), NOT_FOUND_CALLS)
def test_unknown_runtime_not_found(
    runtad: RuntadProcess, contract: Contract, method: str, suffix: str, body: Any
) -> None:
    response = runtad.api(method, f"/runtimes/nosuch{suffix}", body)
    contract.check(response, method, "/v1/runtimes/{name}" + suffix)
    assert_error(response, 404, "not_found")
    assert "'nosuch' not found" in response.json()["error"]["message"]


# --- routes and methods ---------------------------------------------------------------------


def test_unknown_route_not_found(runtad: RuntadProcess) -> None:
    response = runtad.api("GET", "/nothing")
    assert_error(response, 404, "not_found")
    assert "/v1/openapi.json" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("method", "path"), [("DELETE", "/status"), ("PUT", "/runtimes"), ("POST", "/audits")]
)
def test_wrong_method_not_allowed(runtad: RuntadProcess, method: str, path: str) -> None:
    response = runtad.api(method, path)
    assert_error(response, 405, "method_not_allowed")
    assert method not in response.headers["Allow"]
    assert "GET" in response.headers["Allow"]


# --- egress policy --------------------------------------------------------------------------


def test_egress_get_matches_schema(runtad: RuntadProcess, contract: Contract) -> None:
    sandbox = runtad.create_sandbox()
    assert sandbox.post("allow", ["pypi.org", "*.pythonhosted.org"]).status_code == 200
    response = runtad.api("GET", f"/runtimes/{sandbox.name}/egress")
    body = contract.check(response, "GET", "/v1/runtimes/{name}/egress")
    entries = {entry["host"]: entry for entry in body["entries"]}
    assert entries["pypi.org"]["status"] == "resolved"
    assert {item["address"] for item in entries["pypi.org"]["addresses"]} == {
        "192.0.2.10",
        "2001:db8::10",
    }
    assert entries["*.pythonhosted.org"]["kind"] == "wildcard"


def test_unresolved_entry_matches_schema(runtad: RuntadProcess, contract: Contract) -> None:
    sandbox = runtad.create_sandbox()
    response = sandbox.post("allow", ["nxdomain.example.net"])
    body = contract.check(response, "POST", "/v1/runtimes/{name}/egress/allow")
    assert body["entries"][0]["status"] == "unresolved"


def test_allow_adds_and_raises_version(runtad: RuntadProcess, contract: Contract) -> None:
    sandbox = runtad.create_sandbox()
    response = sandbox.post("allow", ["PyPI.org.", "*.pythonhosted.org"])
    body = contract.check(response, "POST", "/v1/runtimes/{name}/egress/allow")
    assert body["allowed_hosts"] == ["pypi.org", "*.pythonhosted.org"]
    assert body["version"] == 2


def test_allow_present_host_keeps_version(runtad: RuntadProcess) -> None:
    sandbox = runtad.create_sandbox()
    first = sandbox.post("allow", ["pypi.org"]).json()
    again = sandbox.post("allow", ["pypi.org"]).json()
    assert again["version"] == first["version"]
    assert again["allowed_hosts"] == ["pypi.org"]


def test_allow_second_host_invalid(runtad: RuntadProcess, contract: Contract) -> None:
    sandbox = runtad.create_sandbox()
    assert sandbox.post("allow", ["example.com"]).status_code == 200
    before = sandbox.egress()
    response = sandbox.post("allow", ["pypi.org", "https://files.pythonhosted.org/simple"])
    contract.check(response, "POST", "/v1/runtimes/{name}/egress/allow")
    assert_error(response, 400, "invalid_host", "hosts[1]")
    after = sandbox.egress()
    assert after["version"] == before["version"]
    assert after["allowed_hosts"] == ["example.com"]


def test_allow_public_suffix_wildcard(runtad: RuntadProcess) -> None:
    sandbox = runtad.create_sandbox()
    response = sandbox.post("allow", ["pypi.org", "*.com"])
    assert_error(response, 400, "public_suffix_wildcard", "hosts[1]")
    assert sandbox.egress()["allowed_hosts"] == []


def test_allow_public_suffix_forced(runtad: RuntadProcess) -> None:
    sandbox = runtad.create_sandbox()
    response = write(runtad, "POST", sandbox.name, "allow", {"hosts": ["*.com"], "force": True})
    assert response.status_code == 200, response.text
    assert response.json()["allowed_hosts"] == ["*.com"]


def test_allow_missing_hosts(runtad: RuntadProcess) -> None:
    sandbox = runtad.create_sandbox()
    assert_error(write(runtad, "POST", sandbox.name, "allow", {}), 400, "invalid_request", "hosts")


def test_allow_hosts_not_list(runtad: RuntadProcess) -> None:
    sandbox = runtad.create_sandbox()
    response = write(runtad, "POST", sandbox.name, "allow", {"hosts": "pypi.org"})
    assert_error(response, 400, "invalid_request", "hosts")


def test_allow_host_not_string(runtad: RuntadProcess) -> None:
    sandbox = runtad.create_sandbox()
    response = write(runtad, "POST", sandbox.name, "allow", {"hosts": ["pypi.org", 443]})
    assert_error(response, 400, "invalid_request", "hosts[1]")


def test_allow_unknown_field(runtad: RuntadProcess) -> None:
    sandbox = runtad.create_sandbox()
    response = write(runtad, "POST", sandbox.name, "allow", {"hosts": ["pypi.org"], "ports": [443]})
    assert_error(response, 400, "invalid_request", "ports")
    assert sandbox.egress()["allowed_hosts"] == []


def test_allow_force_wrong_type(runtad: RuntadProcess) -> None:
    sandbox = runtad.create_sandbox()
    response = write(runtad, "POST", sandbox.name, "allow", {"hosts": ["*.com"], "force": "yes"})
    assert_error(response, 400, "invalid_request", "force")


def test_remove_drops_host(runtad: RuntadProcess, contract: Contract) -> None:
    sandbox = runtad.create_sandbox()
    assert sandbox.post("allow", ["pypi.org", "example.com"]).status_code == 200
    response = sandbox.post("remove", ["pypi.org"])
    body = contract.check(response, "POST", "/v1/runtimes/{name}/egress/remove")
    assert body["allowed_hosts"] == ["example.com"]


def test_remove_absent_host_changes_nothing(runtad: RuntadProcess, contract: Contract) -> None:
    sandbox = runtad.create_sandbox()
    assert sandbox.post("allow", ["pypi.org"]).status_code == 200
    before = sandbox.egress()
    response = sandbox.post("remove", ["pypi.org", "example.com"])
    contract.check(response, "POST", "/v1/runtimes/{name}/egress/remove")
    assert_error(response, 400, "invalid_request", "hosts[1]")
    after = sandbox.egress()
    assert after["allowed_hosts"] == ["pypi.org"]
    assert after["version"] == before["version"]


def test_put_replaces_policy(runtad: RuntadProcess, contract: Contract) -> None:
    sandbox = runtad.create_sandbox()
    assert sandbox.post("allow", ["pypi.org"]).status_code == 200
    body = {"enabled": True, "allowed_hosts": ["example.com"], "inspect": "all"}
    response = write(runtad, "PUT", sandbox.name, "", body)
    result = contract.check(response, "PUT", "/v1/runtimes/{name}/egress")
    assert result["allowed_hosts"] == ["example.com"]
    assert result["enabled"] is True
    assert result["inspect"] == "all"


def test_put_missing_enabled(runtad: RuntadProcess) -> None:
    sandbox = runtad.create_sandbox()
    response = write(runtad, "PUT", sandbox.name, "", {"allowed_hosts": []})
    assert_error(response, 400, "invalid_request", "enabled")


def test_put_enabled_wrong_type(runtad: RuntadProcess) -> None:
    sandbox = runtad.create_sandbox()
    response = write(runtad, "PUT", sandbox.name, "", {"enabled": "true", "allowed_hosts": []})
    assert_error(response, 400, "invalid_request", "enabled")


def test_put_invalid_inspect(runtad: RuntadProcess) -> None:
    sandbox = runtad.create_sandbox()
    body = {"enabled": True, "allowed_hosts": [], "inspect": "some"}
    assert_error(write(runtad, "PUT", sandbox.name, "", body), 400, "invalid_request", "inspect")


def test_put_bad_host_changes_nothing(runtad: RuntadProcess) -> None:
    sandbox = runtad.create_sandbox()
    assert sandbox.post("allow", ["pypi.org"]).status_code == 200
    before = sandbox.egress()
    body = {"enabled": True, "allowed_hosts": ["example.com", "pypi..org"]}
    assert_error(
        write(runtad, "PUT", sandbox.name, "", body), 400, "invalid_host", "allowed_hosts[1]"
    )
    after = sandbox.egress()
    assert after == before


def test_patch_wildcard_names_field(runtad: RuntadProcess) -> None:
    sandbox = runtad.create_sandbox()
    response = write(runtad, "PATCH", sandbox.name, "", {"allowed_hosts": ["*.co.uk"]})
    assert_error(response, 400, "public_suffix_wildcard", "allowed_hosts[0]")


def test_patch_changes_given_fields(runtad: RuntadProcess, contract: Contract) -> None:
    sandbox = runtad.create_sandbox()
    assert sandbox.post("allow", ["pypi.org"]).status_code == 200
    response = write(runtad, "PATCH", sandbox.name, "", {"enabled": True})
    body = contract.check(response, "PATCH", "/v1/runtimes/{name}/egress")
    assert body["enabled"] is True
    assert body["allowed_hosts"] == ["pypi.org"]


def test_enable_disable_toggle(runtad: RuntadProcess, contract: Contract) -> None:
    sandbox = runtad.create_sandbox()
    enabled = contract.check(sandbox.post("enable"), "POST", "/v1/runtimes/{name}/egress/enable")
    again = sandbox.post("enable").json()
    disabled = contract.check(sandbox.post("disable"), "POST", "/v1/runtimes/{name}/egress/disable")
    assert enabled["enabled"] is True
    assert enabled["version"] == 2
    assert again["version"] == 2
    assert disabled["enabled"] is False
    assert disabled["version"] == 3


# --- If-Match ---------------------------------------------------------------------------------


def test_if_match_current_version(runtad: RuntadProcess) -> None:
    sandbox = runtad.create_sandbox()
    version = sandbox.egress()["version"]
    response = write(runtad, "POST", sandbox.name, "allow", {"hosts": ["pypi.org"]}, str(version))
    assert response.status_code == 200, response.text
    assert response.json()["version"] == version + 1


def test_if_match_quoted_version(runtad: RuntadProcess) -> None:
    sandbox = runtad.create_sandbox()
    version = sandbox.egress()["version"]
    response = write(runtad, "POST", sandbox.name, "enable", None, f'"{version}"')
    assert response.status_code == 200, response.text


def test_if_match_stale_conflicts(runtad: RuntadProcess, contract: Contract) -> None:
    sandbox = runtad.create_sandbox()
    stale = sandbox.egress()["version"]
    assert sandbox.post("allow", ["pypi.org"]).status_code == 200
    before = sandbox.egress()
    response = write(
        runtad, "PUT", sandbox.name, "", {"enabled": True, "allowed_hosts": []}, str(stale)
    )
    contract.check(response, "PUT", "/v1/runtimes/{name}/egress")
    assert_error(response, 409, "version_conflict")
    assert sandbox.egress() == before


NOT_VERSIONS = {
    "word": "latest",
    "negative": "-1",
    "decimal": "1.0",
    "superscript": "²",
    "arabic_indic": "١",
    "too_long": "9" * 5000,
}


@pytest.mark.parametrize("value", NOT_VERSIONS.values(), ids=NOT_VERSIONS.keys())
def test_if_match_not_version(runtad: RuntadProcess, value: str) -> None:
    sandbox = runtad.create_sandbox()
    with raw_client(runtad) as client:
        response = client.post(
            f"/runtimes/{sandbox.name}/egress/enable", headers={b"If-Match": value.encode()}
        )
    assert_error(response, 400, "invalid_request", "If-Match")
    assert sandbox.egress()["enabled"] is False


# --- audits ------------------------------------------------------------------------------------


DENIED_HOSTS = ("example.com", "evilpythonhosted.org")


@pytest.fixture(scope="module")
def denied_lookup(runtad: RuntadProcess) -> SandboxHandle:
    """A sandbox with enforcement on whose lookups of DENIED_HOSTS were denied and stored."""
    sandbox = runtad.create_sandbox()
    assert sandbox.post("enable").status_code == 200
    for host in DENIED_HOSTS:
        sandbox.dig(host)
    deadline = time.monotonic() + STORED_WITHIN
    while time.monotonic() < deadline:
        items = runtad.api("GET", f"/runtimes/{sandbox.name}/egress/events").json()["items"]
        if {item["host"] for item in items} >= set(DENIED_HOSTS):
            return sandbox
        time.sleep(0.2)
    raise AssertionError(f"no events for {DENIED_HOSTS} within {STORED_WITHIN} s")


def test_events_match_schema(
    runtad: RuntadProcess, contract: Contract, denied_lookup: SandboxHandle
) -> None:
    response = runtad.api("GET", f"/runtimes/{denied_lookup.name}/egress/events?limit=5")
    body = contract.check(response, "GET", "/v1/runtimes/{name}/egress/events")
    denied = [item for item in body["items"] if item["host"] == "example.com"]
    assert denied[0]["action"] == "deny"
    assert denied[0]["runtime"] == denied_lookup.name


def test_audits_match_schema(
    runtad: RuntadProcess, contract: Contract, denied_lookup: SandboxHandle
) -> None:
    response = runtad.api("GET", f"/audits?runtime={denied_lookup.name}&category=egress&limit=5")
    body = contract.check(response, "GET", "/v1/audits")
    assert body["items"]
    assert {item["runtime"] for item in body["items"]} == {denied_lookup.name}
    assert {item["category"] for item in body["items"]} == {"egress"}


def test_audits_pages_with_cursor(runtad: RuntadProcess, denied_lookup: SandboxHandle) -> None:
    first = runtad.api("GET", "/audits?limit=1").json()
    assert len(first["items"]) == 1
    assert first["next"] is not None
    second = runtad.api("GET", f"/audits?limit=1&after={first['next']}").json()
    assert second["items"][0]["id"] < first["items"][0]["id"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("after=abc", "after"),
        ("order=up", "order"),
        ("category=dns", "category"),
        ("runtime=", "runtime"),
        ("colour=red", "colour"),
        ("limit=1&limit=2", "limit"),
    ],
)
def test_audits_bad_query(
    runtad: RuntadProcess, contract: Contract, query: str, field: str
) -> None:
    response = runtad.api("GET", f"/audits?{query}")
    contract.check(response, "GET", "/v1/audits")
    assert_error(response, 400, "invalid_request", field)


def test_events_reject_audit_filter(runtad: RuntadProcess) -> None:
    sandbox = runtad.create_sandbox()
    response = runtad.api("GET", f"/runtimes/{sandbox.name}/egress/events?category=egress")
    assert_error(response, 400, "invalid_request", "category")


def test_audits_cursor_beyond_int64(runtad: RuntadProcess) -> None:
    response = runtad.api("GET", f"/audits?after={2**63}")
    assert_error(response, 400, "invalid_request", "after")


# --- concurrency -------------------------------------------------------------------------------


async def allow_concurrently(
    runtad: RuntadProcess, name: str, hosts: list[str]
) -> list[httpx.Response]:
    """Send one allow call per host, all at once, over separate connections."""
    transport = httpx.AsyncHTTPTransport(uds=str(runtad.socket_path))
    limits = httpx.Limits(max_connections=len(hosts))
    async with httpx.AsyncClient(
        transport=transport, base_url=BASE_URL, timeout=120, limits=limits
    ) as client:
        calls = [
            client.post(f"/runtimes/{name}/egress/allow", json={"hosts": [host]}) for host in hosts
        ]
        return await asyncio.gather(*calls)


def test_concurrent_allow_distinct_hosts(runtad: RuntadProcess) -> None:
    sandbox = runtad.create_sandbox()
    before = sandbox.egress()["version"]
    hosts = [f"c{index}.example.com" for index in range(CONCURRENT_CALLS)]

    responses = asyncio.run(allow_concurrently(runtad, sandbox.name, hosts))

    assert [response.status_code for response in responses] == [200] * CONCURRENT_CALLS
    for host, response in zip(hosts, responses):
        assert host in response.json()["allowed_hosts"]
    after = sandbox.egress()
    assert sorted(after["allowed_hosts"]) == sorted(hosts)
    assert len(after["allowed_hosts"]) == len(set(after["allowed_hosts"]))
    assert after["version"] == before + CONCURRENT_CALLS


def test_concurrent_allow_repeated_hosts(runtad: RuntadProcess) -> None:
    sandbox = runtad.create_sandbox()
    before = sandbox.egress()["version"]
    distinct = [f"r{index}.example.com" for index in range(CONCURRENT_CALLS // 2)]
    hosts = distinct + distinct

    responses = asyncio.run(allow_concurrently(runtad, sandbox.name, hosts))

    assert [response.status_code for response in responses] == [200] * len(hosts)
    versions = {response.json()["version"] for response in responses}
    after = sandbox.egress()
    assert sorted(after["allowed_hosts"]) == sorted(distinct)
    assert after["version"] == before + len(distinct)
    # Each call that added its host got a version of its own.
    assert versions == set(range(before + 1, before + len(distinct) + 1))


# --- Schemathesis --------------------------------------------------------------------------------


class UnixSocketConnection(urllib3.connection.HTTPConnection):
    """An HTTP connection to a unix socket. The URL's host is only sent in the Host field."""

    def __init__(self, *args: Any, socket_path: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.socket_path = socket_path

    def _new_conn(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout if isinstance(self.timeout, (int, float)) else None)
        sock.connect(self.socket_path)
        return sock


class UnixSocketPool(urllib3.HTTPConnectionPool):
    ConnectionCls = UnixSocketConnection


class UnixSocketAdapter(HTTPAdapter):
    """A requests adapter that sends every request to one unix socket."""

    def __init__(self, socket_path: str) -> None:
        super().__init__()
        self.pool = UnixSocketPool("runtad", socket_path=socket_path)

    def get_connection_with_tls_context(self, *args: Any, **kwargs: Any) -> UnixSocketPool:
        return self.pool

    def close(self) -> None:
        self.pool.close()
        super().close()


# Schemathesis builds one test per operation at collection, so it reads the document from
# the code; fuzz_session checks that the daemon serves the same one.
# NOTE: schemathesis.pytest.from_fixture, which would load it from the daemon, fails on
# pytest 9.2 ("'Function' object has no attribute '_nodeid'", Schemathesis 4.32.5).
fuzzed = schemathesis.openapi.from_dict(
    build_document(), config=schemathesis.Config.from_dict({"seed": 20261204})
)


@pytest.fixture(scope="module")
def fuzz_session(runtad: RuntadProcess) -> Iterator[requests.Session]:
    """A requests session to the daemon's socket, with runtime FUZZ_RUNTIME to write to.

    Every runtime that exists afterwards and did not before is deleted.
    """
    assert runtad.api("GET", "/openapi.json").json() == fuzzed.raw_schema
    existing = {item["name"] for item in runtad.api("GET", "/runtimes").json()["items"]}
    runtad.create_sandbox(FUZZ_RUNTIME)
    session = requests.Session()
    session.mount("http://runtad/", UnixSocketAdapter(str(runtad.socket_path)))
    try:
        yield session
    finally:
        session.close()
        for item in runtad.api("GET", "/runtimes").json()["items"]:
            if item["name"] not in existing:
                runtad.api("DELETE", f"/runtimes/{item['name']}")
                runtad.sandboxes.discard(item["name"])


@fuzzed.parametrize()
@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=FUZZ_DEADLINE_MS,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_fuzz_no_server_error(case: schemathesis.Case, fuzz_session: requests.Session) -> None:
    # Writes go to a runtime that exists, so their bodies reach validation. The tests
    # above cover 404. DELETE keeps its generated, throwaway name.
    if "name" in (case.path_parameters or {}) and case.method != "DELETE":
        case.path_parameters["name"] = FUZZ_RUNTIME
    response = case.call(session=fuzz_session, base_url="http://runtad")
    case.validate_response(response, checks=FUZZ_CHECKS)
