"""What the API server admits: a CRD's structural schema (default, prune, validate, CEL rules)
and the limits every object meets.

Defaults are applied top-down (a defaulted object gets its own nested defaults), unknown fields
are pruned unless the request asks for `fieldValidation=Strict` (then they are errors, as
`kubectl apply` without `--validate=false` asks), and the result is checked with
`wft_api.schema_check.admission_problems` (the schema, then its CEL rules,
`x-kubernetes-validations`, as kube-apiserver runs them after defaulting; `wft validate` runs
the same). `metadata` is the API server's business, never pruned here. The limits (`limits`) hold for every kind: integers within int64, label keys
and values as Kubernetes allows them, and at most 1.5 MiB an object (etcd's request limit).
"""

from __future__ import annotations

import json
import re
from typing import Any

from wft_api.schema_check import Problem, admission_problems, apply_defaults
from wft_api.v1alpha1 import INT64_MAX

MAX_OBJECT_BYTES = 1_572_864  # etcd's default request size limit: 1.5 MiB
INT64_MIN = -(2**63)
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_MAX_ANNOTATIONS_BYTES = 262_144


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
    defaulted = apply_defaults(obj, schema)
    obj.clear()
    obj.update(defaulted)
    pruned = [] if strict else prune(obj, schema)
    return admission_problems(obj, schema), pruned


def limits(obj: dict[str, Any]) -> list[Problem]:
    """What kube-apiserver refuses of any object, whatever its kind."""
    problems = _integers(obj, "")
    meta = obj.get("metadata") or {}
    for key, value in (meta.get("labels") or {}).items():
        path = f"metadata.labels[{key}]"
        problems += _qualified_name(str(key), path)
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            problems.append(
                Problem(
                    path,
                    f"Invalid value: {json.dumps(value)[:80]}: a valid label must be 63 "
                    "characters or less, empty or beginning and ending with an alphanumeric "
                    "character, with '-', '_', '.' and alphanumerics between",
                )
            )
    annotations = meta.get("annotations") or {}
    for key in annotations:
        problems += _qualified_name(str(key), f"metadata.annotations[{key}]")
    size = sum(len(str(k)) + len(str(v)) for k, v in annotations.items())
    if size > _MAX_ANNOTATIONS_BYTES:
        problems.append(
            Problem("metadata.annotations", f"Too long: must have at most 262144 bytes ({size})")
        )
    return problems


def too_large(obj: dict[str, Any]) -> int:
    """The object's size when it is over etcd's limit, else 0."""
    size = len(json.dumps(obj, separators=(",", ":")))
    return size if size > MAX_OBJECT_BYTES else 0


def _integers(value: Any, path: str) -> list[Problem]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        if INT64_MIN <= value <= INT64_MAX:
            return []
        return [Problem(path, f"Invalid value: {value}: must fit in a 64-bit integer")]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _integers(v, f"{path}.{k}" if path else k)]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _integers(v, f"{path}[{i}]")]
    return []


def _qualified_name(key: str, path: str) -> list[Problem]:
    """A label or annotation key: an optional DNS-subdomain prefix and '/', then a name of at
    most 63 characters."""
    prefix, _, name = key.rpartition("/")
    if (prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix))) or not (
        0 < len(name) <= 63 and _LABEL_NAME.match(name)
    ):
        return [
            Problem(
                path,
                f"Invalid value: {json.dumps(key)[:80]}: a qualified name is an optional "
                "DNS subdomain prefix and '/', then at most 63 alphanumerics, '-', '_' or '.', "
                "beginning and ending with an alphanumeric",
            )
        ]
    return []
