"""Validate WhisperFineTune documents as the cluster plus the operator would.

Two passes, merged: the generated CRD schema (what the API server refuses) and the pydantic
model (what the operator refuses, cross-field rules included). Every problem names the field
path, the value and what is allowed; nothing here raises on bad input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

import yaml
from pydantic import ValidationError

from .crd import root_schema
from .schema_check import Problem, apply_defaults, check, check_cel, pattern_message, short
from .v1alpha1 import API_VERSION, KIND, WhisperFineTune


class DocumentError(Exception):
    """A file that cannot be read as YAML documents at all (syntax error, empty, unreadable)."""


@dataclass
class Document:
    """One YAML document of a file, with the line it starts on (1-based)."""

    index: int
    line: int
    data: Any


@dataclass
class Result:
    document: Document
    problems: list[Problem] = field(default_factory=list)
    resource: WhisperFineTune | None = None
    skipped: str | None = None

    @property
    def label(self) -> str:
        data: dict[str, Any] = self.document.data if isinstance(self.document.data, dict) else {}
        meta: dict[str, Any] = data["metadata"] if isinstance(data.get("metadata"), dict) else {}
        name = meta.get("name") if isinstance(meta.get("name"), str) else "<unnamed>"
        kind = data.get("kind") if isinstance(data.get("kind"), str) else "<no kind>"
        return f"{kind}/{name}"


def load_documents(text: str, source: str = "<input>") -> list[Document]:
    """Parse a multi-document YAML text; a syntax error names the line and column."""
    docs: list[Document] = []
    try:
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as err:  # the reader rejects control characters up front
        raise DocumentError(f"{source}: not a YAML text: {err}") from None
    try:
        while loader.check_node():
            node = loader.get_node()
            data = loader.construct_document(node) if node is not None else None
            line = node.start_mark.line + 1 if node is not None else 1
            docs.append(Document(index=len(docs) + 1, line=line, data=data))
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise DocumentError(f"{where}: YAML syntax error: {err.problem or err}") from None
    except yaml.YAMLError as err:
        raise DocumentError(f"{source}: YAML error: {err}") from None
    finally:
        loader.dispose()
    docs = [d for d in docs if d.data is not None]
    if not docs:
        raise DocumentError(f"{source}: the file holds no YAML documents (it is empty)")
    return docs


@cache
def _schema() -> dict[str, Any]:
    return root_schema()


def _pydantic_problems(err: ValidationError) -> list[Problem]:
    problems = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        elif e["type"] == "missing":
            msg = "is required"
        elif e["type"] == "string_pattern_mismatch":
            msg = pattern_message(e["input"], str((e.get("ctx") or {}).get("pattern", "")))
        elif (
            "input" in e
            and e["type"] not in ("value_error",)
            and not isinstance(e["input"], (dict, list))
        ):
            msg = f"{short(e['input'])}: {msg}"
        elif e["type"] == "value_error" and not isinstance(e.get("input"), (dict, list)):
            msg = f"{short(e.get('input'))}: {msg}"
        problems.append(Problem(path, msg))
    return problems


def _covered(path: str, seen: list[Problem]) -> bool:
    return any(path == p.path or path.startswith(p.path + ".") for p in seen)


def validate_object(data: Any) -> tuple[list[Problem], WhisperFineTune | None]:
    """Problems of one resource (empty when valid), and the parsed resource when valid."""
    if not isinstance(data, dict):
        return [Problem("", f"expected a mapping (a Kubernetes object), got {short(data)}")], None
    problems: list[Problem] = []
    if data.get("apiVersion") != API_VERSION:
        problems.append(
            Problem("apiVersion", f"{short(data.get('apiVersion'))}: use {API_VERSION}")
        )
    if data.get("kind") != KIND:
        problems.append(Problem("kind", f"{short(data.get('kind'))}: use {KIND}"))
    if not isinstance(data.get("metadata"), dict) or "name" not in data["metadata"]:
        problems.append(Problem("metadata.name", "is required"))
    problems += [
        p
        for p in check(data, _schema())
        if p.path not in ("apiVersion", "kind", "metadata.name") or not _covered(p.path, problems)
    ]
    if not problems:  # CEL rules run on a schema-valid, defaulted object, as in the API server
        problems += check_cel(apply_defaults(data, _schema()), _schema())
    try:
        resource = WhisperFineTune.model_validate(data)
    except ValidationError as err:
        problems += [p for p in _pydantic_problems(err) if not _covered(p.path, problems)]
        return problems, None
    return problems, (None if problems else resource)


def validate_documents(docs: list[Document]) -> list[Result]:
    results = []
    for doc in docs:
        data = doc.data
        if (
            isinstance(data, dict)
            and data.get("kind") not in (KIND, None)
            and not str(data.get("apiVersion", "")).startswith("wft.dev/")
        ):
            results.append(Result(doc, skipped=f"not a {KIND}"))
            continue
        problems, resource = validate_object(data)
        results.append(Result(doc, problems, resource))
    return results
