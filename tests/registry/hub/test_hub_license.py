"""Finding a Hub model's license, showing it, and acknowledging it."""

from __future__ import annotations

import pytest

from registry.hub.license import LicenseInfo, acknowledge, license_file, license_from_card, license_from_file
from cli.render import license_prompt
from registry.errors import Aborted, LicenseNotAcknowledgedError

BASE = "https://huggingface.co/org/m/blob/abc"


@pytest.mark.parametrize("card, label, link", [
    ({"license": "apache-2.0"}, "apache-2.0", None),
    ({"license": ["mit", "apache-2.0"]}, "mit, apache-2.0", None),
    ({"license": "other", "license_name": "qwen-research", "license_link": "LICENSE"},
     "qwen-research (other)", f"{BASE}/LICENSE"),
    ({"license": "llama3", "license_link": "https://llama.meta.com/llama3/license"}, "llama3",
     "https://llama.meta.com/llama3/license"),
])
def test_card_metadata(card, label, link):
    found = license_from_card("org/m", card, BASE)
    assert (found.label, found.source, found.link) == (label, "model card", link)


@pytest.mark.parametrize("card", [{}, {"license": ""}, {"license": None}, {"tags": ["x"]}])
def test_cards_without_a_license(card):
    assert license_from_card("org/m", card, BASE) is None


def test_license_file_is_found_and_named_by_its_title():
    assert license_file(["config.json", "LICENSE.md", "LICENSE", "sub/LICENSE"]) == "LICENSE"
    assert license_file(["config.json", "README.md"]) is None
    text = "\n\n# Apache License\nVersion 2.0\n"
    found = license_from_file("org/m", "LICENSE.md", text, f"{BASE}/LICENSE.md")
    assert (found.label, found.source, found.text) == ("Apache License", "LICENSE.md file", text)
    assert license_from_file("org/m", "LICENSE", "  \n", "x").label == "see LICENSE"


def test_acknowledgment():
    info = LicenseInfo("org/m", "apache-2.0", "model card")
    assert acknowledge(info, assume_yes=True, confirm=None) == "acknowledged with --yes"
    assert acknowledge(info, assume_yes=False, confirm=lambda i: True) == "acknowledged"
    with pytest.raises(Aborted):
        acknowledge(info, assume_yes=False, confirm=lambda i: False)
    with pytest.raises(LicenseNotAcknowledgedError, match="pass --yes"):
        acknowledge(info, assume_yes=False, confirm=None)


def test_prompt_shows_link_and_the_start_of_the_text():
    text = "\n".join(f"line {i}" for i in range(30))
    info = LicenseInfo("org/m", "line 0", "LICENSE file", f"{BASE}/LICENSE", text)
    shown = license_prompt(info, max_lines=5)
    assert shown.splitlines() == [
        "License of org/m: line 0, from the LICENSE file", f"  {BASE}/LICENSE",
        "  | line 0", "  | line 1", "  | line 2", "  | line 3", "  | line 4",
        "  | ... (25 more lines; the whole file is kept with the model)",
    ]
    assert license_prompt(LicenseInfo("org/m", None, "none")) == (
        "License of org/m: none declared (the model's terms of use are unknown)")
