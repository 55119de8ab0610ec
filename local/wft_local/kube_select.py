"""Label and field selectors, as `?labelSelector=` and `?fieldSelector=` filter lists and watches.

Label selectors: `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`, comma-joined.
Field selectors: `path=v`, `path==v`, `path!=v` on any dotted path (`metadata.name`,
`status.phase`, `involvedObject.uid` as `kubectl describe` sends); values compare as strings.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Matcher = Callable[[dict[str, Any]], bool]

_SET_EXPR = re.compile(r"^\s*([^\s!=]+)\s+(in|notin)\s+\((.*)\)\s*$")


class SelectorError(ValueError):
    pass


def _split(selector: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts, depth, current = [], 0, ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def _requirement(expr: str) -> Callable[[dict[str, str]], bool]:
    m = _SET_EXPR.match(expr)
    if m:
        key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    for op in ("!=", "==", "="):
        if op in expr:
            key, value = (s.strip() for s in expr.split(op, 1))
            if not key:
                raise SelectorError(f"invalid label selector {expr!r}")
            if op == "!=":
                return lambda labels: labels.get(key) != value
            return lambda labels: labels.get(key) == value
    if expr.startswith("!"):
        key = expr[1:].strip()
        return lambda labels: key not in labels
    if re.fullmatch(r"[A-Za-z0-9._/-]+", expr):
        return lambda labels: expr in labels
    raise SelectorError(f"invalid label selector {expr!r}")


def label_matcher(selector: str | None) -> Matcher:
    if not selector:
        return lambda obj: True
    reqs = [_requirement(e) for e in _split(selector)]

    def match(obj: dict[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(r(labels) for r in reqs)

    return match


def field_value(obj: dict[str, Any], path: str) -> str:
    node: Any = obj
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if node is None:
        return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


def field_matcher(selector: str | None) -> Matcher:
    if not selector:
        return lambda obj: True
    reqs: list[tuple[str, bool, str]] = []
    for expr in _split(selector):
        for op in ("!=", "==", "="):
            if op in expr:
                path, value = (s.strip() for s in expr.split(op, 1))
                reqs.append((path, op != "!=", value))
                break
        else:
            raise SelectorError(f"invalid field selector {expr!r}: use path=value or path!=value")

    def match(obj: dict[str, Any]) -> bool:
        return all((field_value(obj, p) == v) == eq for p, eq, v in reqs)

    return match
