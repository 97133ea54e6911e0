"""Tests of the SDK's URL-to-host normalisation against the shared vectors."""

from __future__ import annotations

import ast
import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import runta.urls
from runta.urls import InvalidHostError, PortIgnoredWarning, normalize_host

VECTORS_PATH = Path(__file__).resolve().parents[1] / "vectors" / "host_normalization.json"
VECTORS: list[dict[str, Any]] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))

REASONS = {
    "empty",
    "has_whitespace",
    "has_userinfo",
    "percent_encoded",
    "bad_port",
    "ip_literal",
    "numeric_tld",
    "empty_label",
    "leading_dot",
    "bad_character",
    "bad_hyphen",
    "label_too_long",
    "name_too_long",
    "bare_wildcard",
    "misplaced_wildcard",
    "invalid_idna",
}

# Inputs from reports of other egress systems that the vectors must keep.
REQUIRED_INPUTS = [
    "Pypi.ORG",
    "https://PyPI.org/simple",
    "pypi.org.",
    "https://pypi.org./",
    "pypi..org",
    ".",
    ".pythonhosted.org",
    "*",
    "*.",
    "**.org",
    "*pythonhosted.org",
    "files*.pythonhosted.org",
    "a.*.org",
    " pypi.org ",
    "pypi.org/",
    "https://pypi.org@evil.test/",
    "https://pypi.org:443@evil.test",
    "https://pypi.org%40evil.test/",
    "https://user:pw@pypi.org/",
    "pypi.org:443",
    "pypi.org:443/simple",
    "https://pypi.org:8443/x?y=1",
    "[2001:db8::1]",
    "https://[2001:db8::1]:443/",
    "::1",
]


def _case_id(case: dict[str, Any]) -> str:
    return repr(case["input"])


HOST_CASES = [pytest.param(case, id=_case_id(case)) for case in VECTORS if "host" in case]
ERROR_CASES = [pytest.param(case, id=_case_id(case)) for case in VECTORS if "error" in case]


def _normalize_recording(value: str) -> tuple[str, list[type[Warning]]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        host = normalize_host(value)
    return host, [warning.category for warning in caught]


def _error(value: str) -> InvalidHostError:
    with pytest.raises(InvalidHostError) as excinfo:
        normalize_host(value)
    return excinfo.value


# The vectors file


def test_vectors_count() -> None:
    assert len(VECTORS) >= 60


@pytest.mark.parametrize("value", REQUIRED_INPUTS)
def test_vectors_cover_field_case(value: str) -> None:
    assert value in {case["input"] for case in VECTORS}


def test_vectors_inputs_unique() -> None:
    inputs = [case["input"] for case in VECTORS]
    assert len(inputs) == len(set(inputs))


@pytest.mark.parametrize("case", [pytest.param(case, id=_case_id(case)) for case in VECTORS])
def test_vectors_entry_shape(case: dict[str, Any]) -> None:
    assert set(case) in ({"input", "host"}, {"input", "host", "warning"}, {"input", "error"})


@pytest.mark.parametrize("case", ERROR_CASES)
def test_vectors_reason_known(case: dict[str, Any]) -> None:
    assert case["error"] in REASONS


# normalize_host on the vectors


@pytest.mark.parametrize("case", HOST_CASES)
def test_normalize_host_vector_host(case: dict[str, Any]) -> None:
    host, _ = _normalize_recording(case["input"])
    assert host == case["host"]


@pytest.mark.parametrize("case", HOST_CASES)
def test_normalize_host_vector_warning(case: dict[str, Any]) -> None:
    _, categories = _normalize_recording(case["input"])
    expected = [PortIgnoredWarning] if case.get("warning") == "port_ignored" else []
    assert categories == expected


@pytest.mark.parametrize("case", ERROR_CASES)
def test_normalize_host_vector_reason(case: dict[str, Any]) -> None:
    assert _error(case["input"]).reason == case["error"]


@pytest.mark.parametrize("case", ERROR_CASES)
def test_normalize_host_vector_error_host(case: dict[str, Any]) -> None:
    assert _error(case["input"]).host == case["input"]


@pytest.mark.parametrize("case", ERROR_CASES)
def test_normalize_host_vector_message_names_input(case: dict[str, Any]) -> None:
    assert repr(case["input"]) in str(_error(case["input"]))


# Messages and interface


def test_normalize_host_port_warning_message() -> None:
    with pytest.warns(PortIgnoredWarning, match="ports are not part of the egress policy"):
        normalize_host("https://pypi.org:8443/x?y=1")


def test_normalize_host_userinfo_names_real_host() -> None:
    assert "'evil.test'" in str(_error("https://pypi.org@evil.test/"))


def test_normalize_host_ip_message() -> None:
    assert "the allowlist takes host names" in str(_error("https://[2001:db8::1]:443/"))


def test_normalize_host_error_is_value_error() -> None:
    assert isinstance(_error("pypi..org"), ValueError)


def test_normalize_host_rejects_non_string() -> None:
    with pytest.raises(TypeError):
        normalize_host(None)  # type: ignore[arg-type]


def test_urls_does_not_import_runtad() -> None:
    tree = ast.parse(Path(runta.urls.__file__).read_text(encoding="utf-8"))
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    assert not {module for module in modules if module.split(".")[0] == "runtad"}


# Properties

LABEL = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
TOP_LABEL = st.from_regex(r"[a-z](?:[a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
NAMES = st.builds(
    lambda labels, top: ".".join([*labels, top]),
    st.lists(LABEL, max_size=4),
    TOP_LABEL,
)


@given(name=NAMES)
def test_normalize_host_keeps_canonical_name(name: str) -> None:
    assert normalize_host(name) == name


@given(
    name=NAMES,
    port=st.integers(min_value=0, max_value=65535),
    path=st.sampled_from(["", "/", "/x?y=1#z"]),
)
def test_normalize_host_url_with_port(name: str, port: int, path: str) -> None:
    with pytest.warns(PortIgnoredWarning):
        host = normalize_host(f"https://{name.upper()}.:{port}{path}")
    assert host == name
