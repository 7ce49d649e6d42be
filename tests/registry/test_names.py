"""Model name rules: each hostile name is refused with the rule it breaks."""

from __future__ import annotations

import pytest

from registry.names import derive_name, name_problem, validate_name
from registry.errors import InvalidNameError


@pytest.mark.parametrize(("name", "rule"), [
    ("", "must not be empty"),
    ("..", "must not contain '..'"),
    ("a..b", "must not contain '..'"),
    ("/abs", "must not contain '/' or '\\'"),
    ("a/b", "must not contain '/' or '\\'"),
    ("a\\b", "must not contain '/' or '\\'"),
    (".hidden", "must not start with '.'"),
    ("nul\x00byte", "control characters"),
    ("new\nline", "control characters"),
    ("x" * 300, "at most 100 characters (this one has 300)"),
    ("registry.json", "one of the store's own files"),
    ("REGISTRY.JSON", "one of the store's own files"),
    ("registry.json.prev", "one of the store's own files"),
    ("con", "reserved device name"),
    ("a@step-2", "'@' is reserved"),
    ("caf\u00e9", "use only ASCII letters"),
    ("-dash", "use only ASCII letters"),
    ("sp ace", "use only ASCII letters"),
])
def test_hostile_names_are_refused_with_their_rule(name, rule):
    with pytest.raises(InvalidNameError) as info:
        validate_name(name)
    assert rule in info.value.rule
    assert info.value.name == name


@pytest.mark.parametrize("name", ["Qwen2.5-0.5B", "my_model", "a", "x" * 100, "v1+ft"])
def test_good_names_pass(name):
    assert validate_name(name) == name


@pytest.mark.parametrize(("text", "derived"), [
    ("Qwen/Qwen2.5-0.5B", "Qwen2.5-0.5B"),
    ("/home/u/models/my model!/", "my-model"),
    ("...", "model"),
    ("con", "model-con"),
    ("caf\u00e9-lm", "caf-lm"),
])
def test_derived_names_are_valid(text, derived):
    assert derive_name(text) == derived
    assert name_problem(derived) is None
