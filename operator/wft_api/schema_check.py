"""Check an object against the CRD's OpenAPI v3 schema, as the API server would.

Used by `wft validate` (the cluster half of "cluster plus operator") and by the embedded
Kubernetes API, so that a resource the CRD would refuse is refused here too. It covers what
our generated schema uses: type, enum, minimum/maximum (exclusive too), min/maxLength, pattern,
min/maxItems, min/maxProperties, required, properties, additionalProperties,
x-kubernetes-int-or-string and x-kubernetes-list-type: set; numbers must be finite (JSON has no
NaN or Inf). CEL rules (x-kubernetes-validations) run with `check_cel`. Unknown fields are
reported (the API server would prune them silently, which is how a typo loses a setting), with
a did-you-mean.

Nothing here raises on any input (huge integers, deep or odd values, rules that fail to
evaluate), and no message repeats credentials written into a URL (`uris.redact`).
"""

from __future__ import annotations

import difflib
import math
import re
import reprlib
from dataclasses import dataclass
from functools import cache
from typing import Any

from .uris import redact
from .v1alpha1 import INT64_MAX, PATTERN_HINTS


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a resource: the field path, the offending value, what is allowed."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def pattern_message(value: Any, pattern: str) -> str:
    hint = PATTERN_HINTS.get(pattern, f"a string matching {pattern}")
    return f"{short(value)} is not valid; must be {hint}"


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = 80
_REPR.maxlevel = 3


def short(value: Any, limit: int = 60) -> str:
    """The value as a message quotes it: at most `limit` characters, credentials redacted."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        # repr() of an int of more than 4300 digits raises; this one needs no digits anyway
        digits = int(value.bit_length() * math.log10(2)) + 1
        return f"{'-' if value < 0 else ''}an integer of about {digits} digits"
    try:
        text = f"'{value[: limit * 2]}'" if isinstance(value, str) else _REPR.repr(value)
    except Exception:  # an object whose repr fails: name its type
        text = f"<{type(value).__name__}>"
    text = redact(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def did_you_mean(key: str, allowed: list[str]) -> str:
    lowered = {a.lower(): a for a in allowed}
    if key.lower() in lowered:
        return f"did you mean '{lowered[key.lower()]}'?"
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    return f"allowed: {', '.join(sorted(allowed))}" if allowed else "no fields allowed here"


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def _type_ok(value: Any, expected: str) -> bool:
    if isinstance(value, bool) and expected != "boolean":
        return False
    return isinstance(value, _TYPES.get(expected, ()))


def check(value: Any, schema: dict[str, Any], path: str = "") -> list[Problem]:
    """All problems of `value` against `schema`, depth first, in document order."""
    if schema.get("x-kubernetes-int-or-string"):
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            return [Problem(path, f"{short(value)} is not an integer or a string")]
        if isinstance(value, int):
            return _bounds(value, schema, path)
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return [
                Problem(path, f"{short(value)} is longer than {schema['maxLength']} characters")
            ]
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return [Problem(path, pattern_message(value, schema["pattern"]))]
        return []
    if schema.get("x-kubernetes-preserve-unknown-fields") and "type" not in schema:
        return []
    expected = schema.get("type")
    if expected and not _type_ok(value, expected):
        article = "an" if expected[0] in "aeiou" else "a"
        return [Problem(path, f"{short(value)} is not {article} {expected}")]
    if isinstance(value, float) and not math.isfinite(value):
        return [Problem(path, f"{short(value)} is not a finite number")]
    problems: list[Problem] = []
    if "enum" in schema and not _in(value, schema["enum"]):
        allowed = ", ".join(str(v) for v in schema["enum"])
        if len(schema["enum"]) > 12:
            allowed = ", ".join(str(v) for v in schema["enum"][:12]) + ", ..."
        problems.append(Problem(path, f"{short(value)} is not allowed; use one of: {allowed}"))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        problems += _bounds(value, schema, path)
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            problems.append(Problem(path, f"must be at least {schema['minLength']} characters"))
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            problems.append(
                Problem(path, f"{short(value)} is longer than {schema['maxLength']} characters")
            )
        if "pattern" in schema and not re.search(schema["pattern"], value):
            problems.append(Problem(path, pattern_message(value, schema["pattern"])))
    if isinstance(value, list):
        problems += _array(value, schema, path)
    if isinstance(value, dict):
        problems += _object(value, schema, path)
    return problems


def _in(value: Any, allowed: list[Any]) -> bool:
    try:
        return any(value == a and type(value) is type(a) for a in allowed)
    except Exception:  # an odd value that cannot be compared
        return False


def _bounds(value: float, schema: dict[str, Any], path: str) -> list[Problem]:
    lo, hi = schema.get("minimum"), schema.get("maximum")
    if lo is not None:
        if schema.get("exclusiveMinimum") and value <= lo:
            return [Problem(path, f"{short(value)} must be greater than {lo}")]
        if value < lo:
            return [Problem(path, f"{short(value)} must be at least {lo}")]
    if hi is not None:
        if schema.get("exclusiveMaximum") and value >= hi:
            return [Problem(path, f"{short(value)} must be less than {hi}")]
        if value > hi:
            limit = "fit in a 64-bit integer (at most" if hi == INT64_MAX else "be at most"
            close = ")" if hi == INT64_MAX else ""
            return [Problem(path, f"{short(value)} must {limit} {hi}{close}")]
    return []


def _array(value: list[Any], schema: dict[str, Any], path: str) -> list[Problem]:
    problems: list[Problem] = []
    if "minItems" in schema and len(value) < schema["minItems"]:
        problems.append(Problem(path, f"needs at least {schema['minItems']} item(s)"))
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        problems.append(Problem(path, f"allows at most {schema['maxItems']} items"))
    if schema.get("x-kubernetes-list-type") == "set":
        dupes = sorted({short(v) for v in value if value.count(v) > 1})
        if dupes:
            problems.append(Problem(path, f"duplicate entries: {', '.join(dupes)}"))
    items = schema.get("items")
    if items:
        for i, item in enumerate(value):
            problems += check(item, items, f"{path}[{i}]")
    return problems


def _object(value: dict[str, Any], schema: dict[str, Any], path: str) -> list[Problem]:
    problems: list[Problem] = []
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        problems.append(
            Problem(path, f"has {len(value)} entries; at most {schema['maxProperties']} allowed")
        )
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        problems.append(Problem(path, f"needs at least {schema['minProperties']} entries"))
    props: dict[str, Any] = schema.get("properties", {})
    for req in schema.get("required", []):
        if req not in value:
            problems.append(Problem(_join(path, req), "is required"))
    extra = schema.get("additionalProperties")
    for key, item in value.items():
        sub = _join(path, str(key))
        if key in props:
            problems += check(item, props[key], sub)
        elif isinstance(extra, dict):
            problems += check(item, extra, sub)
        elif props and not schema.get("x-kubernetes-preserve-unknown-fields"):
            problems.append(Problem(sub, f"unknown field; {did_you_mean(str(key), list(props))}"))
    return problems


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def apply_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """Fill `default`s into a copy of `value`, as the API server does for structural schemas.

    Defaults apply only where the parent object exists (a missing `spec.lora` stays missing).
    """
    if isinstance(value, dict):
        props: dict[str, Any] = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        out = {}
        for key, item in value.items():
            sub = props.get(key, extra)
            out[key] = apply_defaults(item, sub) if isinstance(sub, dict) else item
        for key, sub in props.items():
            if key not in out and "default" in sub:
                out[key] = apply_defaults(sub["default"], sub)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(v, schema["items"]) for v in value]
    return value


def admission_problems(obj: Any, schema: dict[str, Any]) -> list[Problem]:
    """What kube-apiserver refuses of a custom resource against its CRD's schema: the
    structural schema, then (only on an object that passes it, and after defaulting, as the
    API server orders them) the CEL rules. `metadata` is the server's own business (its own
    checks), so only CEL rules read it (a rule may read `self.metadata.name`)."""
    if not isinstance(obj, dict):
        return check(obj, schema)
    body = {k: v for k, v in obj.items() if k != "metadata"}
    properties = {k: v for k, v in (schema.get("properties") or {}).items() if k != "metadata"}
    problems = check(body, {**schema, "properties": properties})
    if not problems:
        problems = check_cel(apply_defaults(obj, schema), schema)
    return problems


@cache
def _program(rule: str) -> Any:
    import celpy

    env = celpy.Environment()
    return env.program(env.compile(rule))


def check_cel(value: Any, schema: dict[str, Any], path: str = "") -> list[Problem]:
    """Evaluate `x-kubernetes-validations` rules (CEL) with cel-python, when it is installed.

    The API server evaluates these after defaulting; call this on `apply_defaults(value, ...)`.
    Without cel-python (the operator image does not ship it) this returns no problems: the
    model's validators mirror every rule.
    """
    try:
        from celpy import json_to_cel  # type: ignore[attr-defined]
    except ImportError:
        return []
    problems: list[Problem] = []
    for rule in schema.get("x-kubernetes-validations", []):
        try:
            passed = bool(_program(rule["rule"]).evaluate({"self": json_to_cel(value)}))
            detail = ""
        except Exception as err:  # a rule that errors fails, as in the API server
            passed, detail = False, f" ({short(str(err), 120)})"
        if not passed:
            problems.append(
                Problem(path, rule.get("message", f"failed rule {rule['rule']}") + detail)
            )
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                problems += check_cel(value[key], sub, _join(path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            problems += check_cel(item, schema["items"], f"{path}[{i}]")
    return problems
