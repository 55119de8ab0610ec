"""Validate WhisperFineTune documents as the cluster plus the operator would.

`parse_resource` is the operator's one check, where a resource enters it: the pydantic model
(every rule the CRD holds, since the CRD is generated from it, plus the cross-field rules it
cannot say). `validate_object` is `wft validate`'s: first what the API server refuses (the
generated CRD schema and its CEL rules, `schema_check.admission_problems`, which the embedded
API server runs too), then the same model parse. Every problem names the field path, the value
and what is allowed; nothing here raises on bad input.

YAML is read with limits, as kubectl reads it: a first pass over the parser's events (no
objects built) allows at most `MAX_NODES` nodes, an alias counting as the size of what it
expands to (a "billion laughs" file is refused at the alias that crosses it, in milliseconds),
at most `MAX_DEPTH` levels of nesting (never a RecursionError), and no alias inside its own
anchor; an integer of thousands of digits is an error at its line, not a crash. The size
of a file is the reader's business (`wft_cli.files.MAX_FILE_BYTES`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import yaml
from pydantic import ValidationError
from yaml.constructor import ConstructorError

from .crd import root_schema
from .schema_check import Problem, admission_problems, pattern_message, short
from .uris import redact
from .v1alpha1 import API_VERSION, GROUP, KIND, WhisperFineTune

# An expanded WhisperFineTune is about 100 nodes; `kubectl get -o yaml` of a few hundred
# resources with their managedFields stays well under this.
MAX_NODES = 250_000
MAX_DEPTH = 64
# A resource with more problems than this is reported with the first ones and a count.
MAX_PROBLEMS = 50
_MAX_PROBLEM_CHARS = 400


class DocumentError(Exception):
    """A file that cannot be read as YAML documents at all (syntax error, empty, unreadable)."""


class _LimitError(yaml.MarkedYAMLError):
    """A document beyond a reading limit (aliases, depth, a number too long)."""

    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(None, None, problem, mark)


# libyaml when the install has it (every PyYAML wheel does): the same YAML, several times faster.
_BaseLoader: Any = yaml.CSafeLoader if getattr(yaml, "__with_libyaml__", False) else yaml.SafeLoader


class _Loader(_BaseLoader):  # type: ignore[misc]
    """SafeLoader whose integers of thousands of digits are an error at their line."""

    def construct_yaml_int(self, node: Any) -> int:
        try:
            return int(super().construct_yaml_int(node))
        except ValueError:  # int() refuses more than 4300 digits
            raise _LimitError(
                f"an integer of {len(str(node.value))} characters", node.start_mark
            ) from None


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


def _check_limits(text: str) -> None:
    """Walk the parser's events (no objects built) and refuse the node that crosses
    `MAX_NODES` (an alias counts as the size of what it expands to) or `MAX_DEPTH`, or an
    alias inside its own anchor. A syntax error is left to the loader, which words it."""
    parser = _BaseLoader(text)
    open_: list[list[Any]] = []  # [size so far, anchor] of each collection being read
    anchors: dict[str, int] = {}
    total = 0

    def charge(cost: int, event: Any, what: str) -> None:
        nonlocal total
        total += cost
        if total > MAX_NODES:
            why = (
                "excessive aliasing, as in a 'billion laughs' file"
                if what.startswith("alias")
                else "far more than resources hold"
            )
            raise _LimitError(
                f"{what} brings the file past {MAX_NODES:,} YAML nodes ({why}); refused",
                event.start_mark,
            )
        if open_:
            open_[-1][0] += cost

    try:
        while parser.check_event():
            event: Any = parser.get_event()
            if isinstance(event, yaml.DocumentStartEvent):
                anchors = {}
            elif isinstance(event, yaml.AliasEvent):
                if any(anchor == event.anchor for _, anchor in open_):
                    raise _LimitError(
                        f"alias *{event.anchor} is inside its own anchor (a cycle)",
                        event.start_mark,
                    )
                charge(anchors.get(str(event.anchor), 1), event, f"alias *{event.anchor}")
            elif isinstance(event, yaml.ScalarEvent):
                charge(1, event, "this value")
                if event.anchor:
                    anchors[event.anchor] = 1
            elif isinstance(event, yaml.CollectionStartEvent):
                charge(1, event, "this node")
                open_.append([1, event.anchor])
                if len(open_) > MAX_DEPTH:
                    raise _LimitError(f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
            elif isinstance(event, yaml.CollectionEndEvent) and open_:
                size, anchor = open_.pop()
                if anchor:
                    anchors[anchor] = size
                if open_:
                    open_[-1][0] += size
    except _LimitError:
        raise
    except yaml.YAMLError:
        return
    finally:
        parser.dispose()


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
        loader = _Loader(text)
    except (yaml.YAMLError, ValueError) as err:  # the reader refuses control characters
        raise DocumentError(f"{source}: not a YAML text: {_first_line(err)}") from None
    try:
        _check_limits(text)
        while loader.check_node():
            node = loader.get_node()
            data = loader.construct_document(node) if node is not None else None
            line = node.start_mark.line + 1 if node is not None else 1
            docs.append(Document(index=len(docs) + 1, line=line, data=data))
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        if isinstance(err, _LimitError):
            raise DocumentError(f"{where}: {err.problem}") from None
        kind = "YAML error" if isinstance(err, ConstructorError) else "YAML syntax error"
        raise DocumentError(f"{where}: {kind}: {err.problem or _first_line(err)}") from None
    except yaml.YAMLError as err:
        raise DocumentError(f"{source}: YAML error: {_first_line(err)}") from None
    except RecursionError:  # not expected below MAX_DEPTH; never a traceback all the same
        raise DocumentError(f"{source}: nested too deeply to read") from None
    except ValueError as err:  # e.g. text no encoding can carry
        raise DocumentError(f"{source}: not a YAML text: {_first_line(err)}") from None
    finally:
        loader.dispose()
    docs = [d for d in docs if d.data is not None]
    if not docs:
        raise DocumentError(f"{source}: the file holds no YAML documents (it is empty)")
    return docs


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__


@cache
def _schema() -> dict[str, Any]:
    return root_schema()


def _pydantic_problems(err: ValidationError) -> list[Problem]:
    problems = []
    for e in err.errors():
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e["loc"])[1:]
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
    """Problems of one resource (empty when valid), and the parsed resource when valid: what
    the API server would refuse, then what the operator would (`parse_resource`)."""
    return _never_raising(_validate_object, data)


def parse_resource(data: Any) -> tuple[list[Problem], WhisperFineTune | None]:
    """The typed resource, or the problems that make it none: the model's check alone.

    For a resource the API server has admitted already (its schema and CEL rules are the
    model's own, generated from it), so the operator does not check them a second time.
    """
    return _never_raising(_parse, data)


def _never_raising(
    validate: Callable[[Any], tuple[list[Problem], WhisperFineTune | None]], data: Any
) -> tuple[list[Problem], WhisperFineTune | None]:
    """Never raises: an input no check foresaw is reported as a problem, not a traceback. At
    most `MAX_PROBLEMS` problems (then a count of the rest), each of bounded length, so the
    operator's status message stays within what the API server stores."""
    try:
        problems, resource = validate(data)
    except Exception as err:  # a bug, not the user's fault: still a message, never a crash
        return [Problem("", f"cannot be validated ({type(err).__name__}: {short(str(err))})")], None
    if len(problems) > MAX_PROBLEMS:
        rest = len(problems) - MAX_PROBLEMS
        problems = [*problems[:MAX_PROBLEMS], Problem("", f"and {rest} more problems")]
    return [_bounded(p) for p in problems], resource


def _bounded(p: Problem) -> Problem:
    p = Problem(redact(p.path), redact(p.message))
    if len(p.path) + len(p.message) <= _MAX_PROBLEM_CHARS:
        return p
    path = p.path if len(p.path) <= 200 else p.path[:197] + "..."
    room = _MAX_PROBLEM_CHARS - len(path)
    return Problem(path, p.message if len(p.message) <= room else p.message[: room - 3] + "...")


def _validate_object(data: Any) -> tuple[list[Problem], WhisperFineTune | None]:
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
        for p in admission_problems(data, _schema())
        if p.path not in ("apiVersion", "kind", "metadata.name") or not _covered(p.path, problems)
    ]
    found, resource = _parse(data)
    problems += [p for p in found if not _covered(p.path, problems)]
    return problems, (None if problems else resource)


def _parse(data: Any) -> tuple[list[Problem], WhisperFineTune | None]:
    try:
        return [], WhisperFineTune.model_validate(data)
    except ValidationError as err:  # never "invalid" without a reason
        return _pydantic_problems(err) or [Problem("", "not a valid WhisperFineTune")], None


def validate_documents(docs: list[Document]) -> list[Result]:
    results = []
    for doc in docs:
        data = doc.data
        if (
            isinstance(data, dict)
            and data.get("kind") not in (KIND, None)
            and not str(data.get("apiVersion", "")).startswith(f"{GROUP}/")
        ):
            results.append(Result(doc, skipped=f"not a {KIND}"))
            continue
        problems, resource = validate_object(data)
        results.append(Result(doc, problems, resource))
    return results
