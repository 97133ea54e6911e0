"""Normalise hosts with the Python SDK, for the JS SDK's agreement test.

Reads a JSON list of strings on stdin and writes a JSON list of verdicts, each
{"host": ..., "warning": "port_ignored"?} or {"error": reason}, in the shape of
tests/vectors/host_normalization.json. Run it from the repository root.
"""

from __future__ import annotations

import json
import sys
import warnings

from runta.urls import InvalidHostError, PortIgnoredWarning, normalize_host


def verdict(value: str) -> dict[str, str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = {"host": normalize_host(value)}
        except InvalidHostError as error:
            return {"error": error.reason}
    if any(issubclass(item.category, PortIgnoredWarning) for item in caught):
        result["warning"] = "port_ignored"
    return result


def main() -> None:
    values = json.load(sys.stdin)
    json.dump([verdict(value) for value in values], sys.stdout)


if __name__ == "__main__":
    main()
