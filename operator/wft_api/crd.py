"""Generate the CustomResourceDefinition from the pydantic model.

`python -m wft_api.crd > crds/wft.dev_whisperfinetunes.yaml` (that is `make generate`).

Pydantic emits JSON Schema 2020-12; the API server wants a *structural* OpenAPI v3 schema:
every node typed, no `$ref`, `anyOf` only for value validation, no `additionalProperties: false`
beside `properties`, boolean `exclusiveMinimum`. This module translates one into the other.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

import yaml

from .v1alpha1 import (
    CEL_RULES,
    DNS1123_LABEL_PATTERN,
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    WhisperFineTuneSpec,
    WhisperFineTuneStatus,
)

CRD_FILE = f"{GROUP}_{PLURAL}.yaml"

# propertyNames: structural schemas have no such keyword; map keys (nodeSelector) are checked
# by the model, so the operator refuses what the Job's API would (InvalidSpec, not a retry loop).
_DROP = {"title", "additionalProperties", "$defs", "propertyNames"}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    """Inline `$ref`s, fold `Optional[X]` to X, and translate JSON Schema to OpenAPI v3."""
    if isinstance(node, list):
        return [_resolve(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").split("/")[-1]]
        merged = {**target, **node}  # a field's own description wins over the class docstring
        return _resolve(merged, defs)
    if "anyOf" in node:
        branches = [b for b in node.pop("anyOf") if b.get("type") != "null"]
        if node.get("x-kubernetes-int-or-string"):
            # The one union a structural schema allows (as controller-gen emits for Quantity);
            # `pattern` then applies to the string form and `minimum` to the integer form.
            kept = {
                k: v
                for k, v in node.items()
                if k not in _DROP and k != "enum" and not (k == "default" and v is None)
            }
            return {**kept, "anyOf": [{"type": "integer"}, {"type": "string"}]}
        if len(branches) == 1:
            return _resolve({**branches[0], **node}, defs)
        raise ValueError(f"cannot express a union in a structural schema: {branches}")
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "properties":
            out[key] = {k: _resolve(v, defs) for k, v in value.items()}
        elif key in ("items",):
            out[key] = _resolve(value, defs)
        elif key == "exclusiveMinimum":
            out["minimum"], out["exclusiveMinimum"] = value, True
        elif key == "exclusiveMaximum":
            out["maximum"], out["exclusiveMaximum"] = value, True
        elif key == "const":
            out["enum"] = [value]
        elif key == "default" and value is None:
            continue
        else:
            out[key] = copy.deepcopy(value)  # shared lists would be YAML aliases in the CRD
    if "additionalProperties" in node and isinstance(node["additionalProperties"], dict):
        out["additionalProperties"] = _resolve(node["additionalProperties"], defs)
    if "properties" in out or "additionalProperties" in out:
        out.setdefault("type", "object")
    return out


def openapi_schema(model: type[Any]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _resolve(raw, raw.get("$defs", {}))  # type: ignore[no-any-return]


def _at(schema: dict[str, Any], dotted: str) -> dict[str, Any]:
    node = schema
    for part in dotted.split(".")[1:]:
        node = node["properties"][part]
    return node


def root_schema() -> dict[str, Any]:
    spec = openapi_schema(WhisperFineTuneSpec)
    status = openapi_schema(WhisperFineTuneStatus)
    for path, rules in CEL_RULES.items():
        _at(spec, path).setdefault("x-kubernetes-validations", []).extend(rules)
    return {
        "type": "object",
        "description": "A declarative Whisper fine-tune: audio in S3 in, a LoRA adapter in S3 out.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
        "x-kubernetes-validations": [
            {
                # Children (Job, ServiceAccount) derive their names and labels from this one.
                "rule": f"size(self.metadata.name) <= 63 && "
                f"self.metadata.name.matches('{DNS1123_LABEL_PATTERN}')",
                "message": "metadata.name must be a DNS-1123 label (at most 63 characters of "
                "lowercase letters, digits and '-')",
            }
        ],
    }


PRINTER_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    # The trainer's report (status.trainer): its progress, losses and WERs.
    {"name": "Progress", "type": "number", "jsonPath": ".status.trainer.progress.percent"},
    {"name": "ETA(s)", "type": "integer", "jsonPath": ".status.trainer.progress.etaSeconds"},
    {"name": "Loss", "type": "number", "jsonPath": ".status.trainer.metrics.trainLoss"},
    {"name": "Base-WER", "type": "number", "jsonPath": ".status.trainer.metrics.baselineWer"},
    {"name": "WER", "type": "number", "jsonPath": ".status.trainer.metrics.wer"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1},
]


def build_crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "whisper-finetune"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": SHORT_NAMES,
                "categories": ["all", "ml"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": root_schema()},
                }
            ],
        },
    }


def render_crd_yaml() -> str:
    header = "# Generated by `make generate` (python -m wft_api.crd) from wft_api/v1alpha1.py.\n"
    header += "# Do not edit by hand: tests/unit/test_crd.py fails when this file is stale.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=100)


if __name__ == "__main__":
    sys.stdout.write(render_crd_yaml())
