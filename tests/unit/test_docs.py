"""The platform docs say what exists: reasons, resource fields, chart values, links."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from wft_api.conditions import Reason
from wft_api.v1alpha1 import WhisperFineTune

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = [
    "install",
    "guard-rails",
    "first-finetune",
    "storage",
    "kueue",
    "gitops",
    "troubleshooting",
    "serving",
    "multi-gpu",
]
REASONS = sorted(v for k, v in vars(Reason).items() if k.isupper() and isinstance(v, str))


def blocks(page: str, lang: str) -> list[str]:
    text = (DOCS / f"{page}.md").read_text()
    return re.findall(rf"```{lang}\n(.*?)```", text, re.DOTALL)


def test_troubleshooting_has_an_entry_for_every_reason() -> None:
    headings = re.findall(r"^### (\S+)$", (DOCS / "troubleshooting.md").read_text(), re.M)
    assert len(REASONS) > 20
    missing = [r for r in REASONS if r not in headings]
    assert missing == []
    assert sorted(set(headings)) == sorted(headings), "a reason is listed twice"
    assert set(headings) <= set(REASONS), "an entry for a reason the status never shows"


@pytest.mark.parametrize("page", PAGES)
def test_every_example_resource_is_valid(page: str) -> None:
    """Each WhisperFineTune in the docs passes the API model (what `wft validate` checks)."""
    for block in blocks(page, "yaml"):
        for doc in yaml.safe_load_all(block):
            if isinstance(doc, dict) and doc.get("kind") == "WhisperFineTune":
                WhisperFineTune.model_validate(doc)


def _values_keys(node: Any, prefix: str = "") -> set[str]:
    keys = set()
    if isinstance(node, dict):
        for key, value in node.items():
            keys.add(prefix + key)
            keys |= _values_keys(value, prefix + key + ".")
    return keys


def test_chart_values_named_in_the_docs_exist() -> None:
    values = yaml.safe_load((ROOT / "charts/whisper-finetune/values.yaml").read_text())
    known = _values_keys(values)
    named = set()
    for page in PAGES:
        text = (DOCS / f"{page}.md").read_text()
        named |= set(re.findall(r"--set ([\w.]+)=", text))
        named |= {m for m in re.findall(r"`((?:trainer|crds|serviceMonitor|image)\.[\w.]+)`", text)}
    assert named, "the docs name no chart values"
    assert sorted(n for n in named if n not in known) == []


@pytest.mark.parametrize("page", PAGES)
def test_relative_links_resolve(page: str) -> None:
    text = (DOCS / f"{page}.md").read_text()
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
        assert (DOCS / target).exists(), f"{page}.md links to missing {target}"
