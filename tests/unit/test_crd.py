"""The CRD: generated from the model, current, structural, and as strict as the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from wft_api.crd import CRD_FILE, build_crd, render_crd_yaml
from wft_api.schema_check import apply_defaults, check, check_cel

from .test_api_validate import BASE, CASES, with_

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "crds" / CRD_FILE


def test_committed_crd_is_current() -> None:
    assert COMMITTED.read_text() == render_crd_yaml(), (
        "crds/ is stale: run `make generate` and commit the result"
    )


def schema() -> dict[str, Any]:
    return build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


def walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(path, node)]
    for key, sub in node.get("properties", {}).items():
        out += walk(sub, f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        out += walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        out += walk(node["additionalProperties"], f"{path}{{}}")
    return out


def test_schema_is_structural() -> None:
    """The rules a real API server enforces (apiextensions structural schema)."""
    problems = []
    for path, node in walk(schema()):
        if "$ref" in node or "$defs" in node:
            problems.append(f"{path}: $ref")
        int_or_string = node.get("x-kubernetes-int-or-string") is True
        if "type" not in node and not int_or_string:
            problems.append(f"{path}: no type")
        if "anyOf" in node and not (
            int_or_string and node["anyOf"] == [{"type": "integer"}, {"type": "string"}]
        ):
            problems.append(f"{path}: anyOf outside int-or-string")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{path}: properties and additionalProperties together")
        if node.get("x-kubernetes-preserve-unknown-fields"):
            problems.append(f"{path}: preserve-unknown-fields (not meant anywhere)")
        if "exclusiveMinimum" in node and not isinstance(node["exclusiveMinimum"], bool):
            problems.append(f"{path}: JSON-Schema style exclusiveMinimum")
        if "default" in node and node["default"] is None:
            problems.append(f"{path}: null default")
        if "title" in node:
            problems.append(f"{path}: title")
        described = "description" in node or path.endswith(("[]", "{}"))
        if path.startswith(".spec") and not described:
            problems.append(f"{path}: no description (kubectl explain shows it)")
    assert problems == []


def test_crd_names_and_columns() -> None:
    crd = build_crd()
    names = crd["spec"]["names"]
    assert (crd["spec"]["group"], names["kind"], names["plural"], names["shortNames"]) == (
        "wft.dev",
        "WhisperFineTune",
        "whisperfinetunes",
        ["wft"],
    )
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Phase"] == ".status.phase"
    assert columns["Progress"] == ".status.trainer.progress.percent"
    assert columns["WER"] == ".status.trainer.metrics.wer"
    assert columns["Age"] == ".metadata.creationTimestamp"


def server_problems(obj: dict[str, Any]) -> list[str]:
    """What a real API server would say: schema first, then CEL on the defaulted object."""
    problems = check(obj, schema())
    if not problems:
        problems = check_cel(apply_defaults(obj, schema()), schema())
    return [str(p) for p in problems]


# Unknown fields are pruned, not refused, by a real server; `wft validate` reports them instead.
PRUNED = {"learningrate-typo", "unknown-top-field"}
# apiVersion/kind are routed by the server, not validated by the schema.
ROUTED = {"wrong-api-version", "wrong-kind"}


@pytest.mark.parametrize(
    ("case_id", "field", "value"),
    [(c[0], c[1], c[2]) for c in CASES if c[0] not in PRUNED | ROUTED],
    ids=[c[0] for c in CASES if c[0] not in PRUNED | ROUTED],
)
def test_api_server_itself_rejects_the_corpus(case_id: str, field: str, value: Any) -> None:
    assert server_problems(with_(field, value)), f"the CRD accepts {case_id}"


def test_api_server_accepts_valid_and_fills_defaults() -> None:
    assert server_problems(BASE) == []
    defaulted = apply_defaults(BASE, schema())
    assert defaulted["spec"]["baseModel"] == "openai/whisper-large-v3"
    assert defaulted["spec"]["dataset"]["maxDurationSeconds"] == 30
    assert "lora" not in defaulted["spec"]  # defaults apply only inside objects that exist
