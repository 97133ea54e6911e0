"""new_rules: the rule list a policy change requests."""

from __future__ import annotations

import pytest

from runtad.errors import InvalidRequestError
from runtad.hosts import parse_rules
from runtad.manager import PolicyChange, new_rules


def test_remove_missing_names_its_index() -> None:
    current = parse_rules(["a.test"])
    change = PolicyChange(remove_hosts=["a.test", "A.test", "missing.test"])
    with pytest.raises(InvalidRequestError) as raised:
        new_rules("worker", current, change)
    assert "'missing.test'" in str(raised.value)
    assert raised.value.field == "hosts[2]"


def test_remove_duplicate_spellings() -> None:
    current = parse_rules(["a.test", "b.test"])
    rules = new_rules("worker", current, PolicyChange(remove_hosts=["a.test", "A.TEST."]))
    assert [rule.pattern for rule in rules] == ["b.test"]
