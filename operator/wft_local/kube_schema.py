"""What the API server does with a CRD's structural schema: default, prune, validate.

Defaults are applied top-down (a defaulted object gets its own nested defaults), unknown fields
are pruned unless the request asks for `fieldValidation=Strict` (then they are errors, as
`kubectl apply` without `--validate=false` asks), and the result is checked with
`wft_api.schema_check.check`. `metadata` is the API server's business, never pruned here.
CEL rules (`x-kubernetes-validations`) are not evaluated.
"""

from __future__ import annotations

import copy
from typing import Any

from wft_api.schema_check import Problem, check


def apply_defaults(value: Any, schema: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        props: dict[str, Any] = schema.get("properties") or {}
        for key, sub in props.items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
        for key, item in value.items():
            if key in props:
                value[key] = apply_defaults(item, props[key])
            elif isinstance(schema.get("additionalProperties"), dict):
                value[key] = apply_defaults(item, schema["additionalProperties"])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(v, schema["items"]) for v in value]
    return value


def prune(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Drop fields the schema does not know, in place; return their paths."""
    dropped: list[str] = []
    if isinstance(value, dict) and not schema.get("x-kubernetes-preserve-unknown-fields"):
        props: dict[str, Any] = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key in list(value):
            sub_path = f"{path}.{key}" if path else key
            if sub_path == "metadata":
                continue
            if key in props:
                dropped += prune(value[key], props[key], sub_path)
            elif isinstance(extra, dict):
                dropped += prune(value[key], extra, sub_path)
            elif props:
                del value[key]
                dropped.append(sub_path)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            dropped += prune(item, schema["items"], f"{path}[{i}]")
    return dropped


def admit(
    obj: dict[str, Any], schema: dict[str, Any], strict: bool
) -> tuple[list[Problem], list[str]]:
    """Default, prune (unless strict) and check `obj` in place: (problems, pruned field paths)."""
    apply_defaults(obj, schema)
    pruned = [] if strict else prune(obj, schema)
    body = {k: v for k, v in obj.items() if k != "metadata"}
    problems = check(
        body,
        {
            **schema,
            "properties": {
                k: v for k, v in (schema.get("properties") or {}).items() if k != "metadata"
            },
        },
    )
    return problems, pruned
