"""Careless and hostile input to every `-f`, as a user hits it: refused fast, with the field or
the line named, and never a traceback (issue 17).

Numbers beyond what the API server stores, YAML built to exhaust the reader, files that are
not files, URLs with credentials in them, and a seeded fuzz of wrong types everywhere.
"""

from __future__ import annotations

import copy
import datetime
import itertools
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from wft_api.crd import build_crd, root_schema
from wft_api.v1alpha1 import INT64_MAX
from wft_api.validation import (
    MAX_DEPTH,
    MAX_PROBLEMS,
    DocumentError,
    load_documents,
    validate_object,
)

from .test_api_validate import BASE, with_

ROOT = Path(__file__).resolve().parents[2]


def wft(
    *args: str, stdin: bytes | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    run = subprocess.run(
        [sys.executable, "-m", "wft_cli", *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    out = subprocess.CompletedProcess(
        run.args,
        run.returncode,
        run.stdout.decode(errors="replace"),
        run.stderr.decode(errors="replace"),
    )
    assert "Traceback" not in out.stderr, out.stderr
    return out


def write(tmp_path: Path, doc: Any, name: str = "finetune.yaml") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
    return path


# --- integers beyond int64, floats where integers go ------------------------------------------

HUGE = """\
apiVersion: wft.dev/v1alpha1
kind: WhisperFineTune
metadata:
  name: huge
spec:
  dataset: {uri: s3://data-bucket/x/}
  output: {uri: s3://out-bucket/y/}
  training:
    maxSteps: 100000000000000000000
  activeDeadlineSeconds: 10000000000000000000
"""


@pytest.mark.parametrize("command", ["validate", "render", "prepare", "train"])
def test_integers_beyond_int64_are_refused_by_every_command(tmp_path: Path, command: str) -> None:
    path = write(tmp_path, HUGE)
    extra = ["--out", str(tmp_path / "out")] if command == "prepare" else []
    result = wft(command, "-f", str(path), *extra)
    assert result.returncode == 1
    assert "spec.training.maxSteps" in result.stderr
    assert "must fit in a 64-bit integer" in result.stderr
    if command in ("validate", "render"):  # the others stop at the first resource's list
        assert "spec.activeDeadlineSeconds" in result.stderr


@pytest.mark.parametrize(
    ("field", "value", "word"),
    [
        ("spec.training.maxSteps", 1e20, "not an integer"),  # kubectl sends 1e20 as a float
        ("spec.training.maxSteps", 10.0, "not an integer"),
        ("spec.training.maxSteps", "1e20", "not an integer"),  # YAML 1.1 reads 1e20 as text
        ("spec.training.maxSteps", 2**63, "64-bit"),
        ("spec.training.maxSteps", 10**5000, "64-bit"),
        ("spec.training.batchSize", 2**40, "at most"),
        ("spec.ttlSecondsAfterFinished", 2**31, "at most 2147483647"),
        (
            "spec.resources.tolerations",
            [{"key": "a", "effect": "NoExecute", "tolerationSeconds": 2**64}],
            "64-bit",
        ),
        ("spec.resources.cpu", 2**64, "64-bit"),
        ("spec.lora.alpha", float("inf"), "finite"),
        ("spec.training.learningRate", float("nan"), "finite"),
        ("spec.dataset.evalFraction", float("nan"), "finite"),
    ],
    ids=lambda v: "" if not isinstance(v, str) or not v.startswith("spec.") else v,
)
def test_numbers_the_api_server_cannot_store_are_refused(field: str, value: Any, word: str) -> None:
    problems, resource = validate_object(with_(field, value))
    assert resource is None
    assert any(field.split("[")[0] in p.path and word in p.message for p in problems), [
        str(p) for p in problems
    ]


def test_every_integer_string_map_and_list_of_the_crd_is_bounded() -> None:
    """What keeps the API server's CEL cost estimate bounded and big values out: bounds on
    every integer, a maxLength (or an enum) on every string, maxProperties on every map,
    maxItems on every list."""

    def walk(node: dict[str, Any], path: str) -> list[str]:
        out = []
        types = {b.get("type") for b in node.get("anyOf", [])} | {node.get("type")}
        if "integer" in types:
            lo, hi = node.get("minimum"), node.get("maximum")
            if lo is None or hi is None or lo < -(2**63) or hi > INT64_MAX:
                out.append(f"{path}: integer without int64 bounds")
        if "string" in types and "maxLength" not in node and "enum" not in node:
            out.append(f"{path}: string without maxLength")
        if node.get("type") == "object" and "additionalProperties" in node:
            if "maxProperties" not in node:
                out.append(f"{path}: map without maxProperties")
            out += walk(node["additionalProperties"], f"{path}{{}}")
        if node.get("type") == "array":
            if "maxItems" not in node:
                out.append(f"{path}: list without maxItems")
            out += walk(node["items"], f"{path}[]")
        for key, sub in node.get("properties", {}).items():
            out += walk(sub, f"{path}.{key}")
        return out

    schema = root_schema()
    found = walk(schema["properties"]["spec"], "spec") + walk(
        schema["properties"]["status"], "status"
    )
    assert found == []


def test_a_resource_with_thousands_of_problems_lists_the_first_and_a_count() -> None:
    """The operator writes the problems into status.message: it must stay small."""
    doc = copy.deepcopy(BASE)
    doc["spec"].update({f"typo{i}": i for i in range(2000)})
    doc["spec"]["x" * 100_000] = 1
    problems, _ = validate_object(doc)
    assert len(problems) == MAX_PROBLEMS + 1
    assert problems[-1].message.startswith("and ") and "more problems" in problems[-1].message
    assert all(len(str(p)) <= 500 for p in problems)


def _garbage(rnd: random.Random, depth: int = 0) -> Any:
    pick = rnd.randrange(24)
    if depth < 3 and pick < 4:
        return [_garbage(rnd, depth + 1) for _ in range(rnd.randrange(4))]
    if depth < 3 and pick < 8:
        keys = ["a", "uri", "1", "gpus", "key", "operator", "", "name", "Exists"]
        return {rnd.choice(keys): _garbage(rnd, depth + 1) for _ in range(rnd.randrange(4))}
    return rnd.choice(
        [None, True, False, 0, -1, 1, 2**63, -(2**63) - 1, 10**5000, 1e20, 1.5, float("nan"),
         float("inf"), -0.0, "", "x" * 50_000, "s3://bucket/../x", "http://KEY:SECRET@h",
         "http://169.254.169.254/", datetime.date(2020, 1, 1), b"\x00\xff", {1, 2}, "auto",
         "Exists"]
    )  # fmt: skip


def _schema_paths(node: dict[str, Any], prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    for key, sub in node.get("properties", {}).items():
        out += _schema_paths(sub, (*prefix, key))
    if isinstance(node.get("items"), dict):
        out += _schema_paths(node["items"], (*prefix, 0))
    if isinstance(node.get("additionalProperties"), dict):
        out += _schema_paths(node["additionalProperties"], (*prefix, "k"))
    return out


def _set(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    node: Any = doc
    for part, after in itertools.pairwise(path):
        if isinstance(part, int):
            if not isinstance(node, list):
                return
            node = node[0] if node else node.append({}) or node[0]
        elif isinstance(node, dict):
            if not isinstance(node.get(part), (dict, list)):
                node[part] = [] if isinstance(after, int) else {}
            node = node[part]
        else:
            return
    if isinstance(path[-1], int) and isinstance(node, list):
        node.append(value)
    elif isinstance(node, dict):
        node[path[-1]] = value


def test_fuzz_wrong_types_everywhere_never_raise_nor_leak_a_secret() -> None:
    """Every field of the schema, set to garbage a few at a time: problems, never an exception,
    never an internal "cannot be validated", never the secret of an endpoint URL."""
    rnd = random.Random(17)
    paths = [p for p in _schema_paths(build_crd()["spec"]["versions"][0]["schema"]
                                      ["openAPIV3Schema"]) if p]  # fmt: skip
    for _ in range(600):
        doc = copy.deepcopy(BASE)
        for _ in range(rnd.randrange(1, 4)):
            _set(doc, rnd.choice(paths), _garbage(rnd))
        problems, _resource = validate_object(doc)
        for problem in problems:
            text = str(problem)
            assert "cannot be validated" not in text, (text, doc)
            assert "SECRET" not in text, text
            assert len(text) <= 500


# --- YAML built to exhaust the reader -----------------------------------------------------------


def billion_laughs(levels: int = 10) -> str:
    lines = ['lol0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        lines.append(f"lol{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_billion_laughs_is_refused_in_under_a_second_naming_the_line(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(DocumentError) as err:
        load_documents(billion_laughs(), "laughs.yaml")
    assert time.monotonic() - started < 1.0
    assert str(err.value).startswith("laughs.yaml:6:")  # the alias that crosses the budget
    assert "excessive aliasing" in str(err.value)
    result = wft("validate", "-f", str(write(tmp_path, billion_laughs())), timeout=20)
    assert (
        result.returncode == 1
        and "laughs" in result.stderr
        and "finetune.yaml:6:" in (result.stderr)
    )


def test_aliases_within_reason_still_work() -> None:
    text = (
        "apiVersion: wft.dev/v1alpha1\nkind: WhisperFineTune\nmetadata: {name: a}\n"
        "spec:\n  dataset: {uri: &u s3://data-bucket/x/}\n  output: {uri: *u}\n"
    )
    (doc,) = load_documents(text)
    assert validate_object(doc.data) == ([], validate_object(doc.data)[1])


@pytest.mark.parametrize(
    "text",
    [
        "a: " + "[" * 100_000 + "]" * 100_000 + "\n",
        "".join(" " * i + f"k{i}:\n" for i in range(1000)) + " " * 1000 + "x\n",
        "a: " + "{b: " * 5000 + "1" + "}" * 5000 + "\n",
    ],
    ids=["flow-lists", "block-maps", "flow-maps"],
)
def test_deep_nesting_is_refused_with_the_line(tmp_path: Path, text: str) -> None:
    result = wft("validate", "-f", str(write(tmp_path, text)), timeout=20)
    assert result.returncode == 1
    assert f"nested deeper than {MAX_DEPTH} levels" in result.stderr
    assert "finetune.yaml:" in result.stderr and "RecursionError" not in result.stderr


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path: Path) -> None:
    result = wft("validate", "-f", str(write(tmp_path, "spec: &x {a: [*x]}\n")))
    assert result.returncode == 1 and "finetune.yaml:1:" in result.stderr
    assert "cycle" in result.stderr


def test_an_integer_of_thousands_of_digits_names_its_line(tmp_path: Path) -> None:
    text = HUGE.replace("100000000000000000000", "9" * 6000)
    result = wft("validate", "-f", str(write(tmp_path, text)))
    assert result.returncode == 1 and "finetune.yaml:9:" in result.stderr
    assert "an integer of 6000 characters" in result.stderr


def test_dev_zero_and_endless_stdin_are_refused_by_size() -> None:
    result = wft("validate", "-f", "/dev/zero", timeout=20)
    assert result.returncode == 1 and "/dev/zero: larger than 4 MiB" in result.stderr
    result = wft("validate", "-f", "-", stdin=b"a: 1\n" * 1_000_000, timeout=20)
    assert result.returncode == 1 and "<stdin>: larger than 4 MiB" in result.stderr


def test_not_utf8_names_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"a: caf\xe9\n")
    result = wft("validate", "-f", str(path))
    assert result.returncode == 1 and "not a UTF-8 text file (byte 7)" in result.stderr


def test_the_count_of_resources_is_exact(tmp_path: Path) -> None:
    one = copy.deepcopy(BASE)
    two = copy.deepcopy(BASE)
    two["metadata"]["name"] = "second"
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    text = yaml.safe_dump_all([one, config_map, two], sort_keys=False) + "---\n---\n"
    second = text.splitlines().index("  name: second") - 2  # 1-based, its apiVersion line
    result = wft("prepare", "-f", str(write(tmp_path, text)), "--out", str(tmp_path / "o"))
    assert result.returncode == 1
    assert f"expected exactly one WhisperFineTune, found 2 (at lines 1, {second})" in result.stderr
    assert "1 other object(s) skipped" in result.stderr
    stray = yaml.safe_dump(one) + "---\njust a sentence\n---\n- a\n- list\n"
    result = wft("train", "-f", str(write(tmp_path, stray, "stray.yaml")))
    assert result.returncode == 1
    assert "2 document(s) that are not Kubernetes objects" in result.stderr
    assert "found" not in result.stderr


def test_fuzz_mangled_yaml_text_is_a_document_error_or_problems_never_a_crash() -> None:
    """examples/full.yaml with characters inserted, deleted and replaced (YAML's own syntax,
    tags, anchors, control and odd Unicode characters): load and validate never raise
    anything but DocumentError, which names the file."""
    base = (ROOT / "examples" / "full.yaml").read_text()
    pieces = [*"{}[]:,-?&*!|>'\"%@`#\n \t.0123456789eE+_abcxyz\\", "\x00", "\ufeff", "\u2028",
              "\x85", "!!binary ", "!!set ", "!!python/object:os.system ", "<<: ", "&a ", "*a ",
              "---\n", "...\n", "1e400", ".nan", "0x1F", "12:30:00", "9" * 5000]  # fmt: skip
    rnd = random.Random(17)
    for _ in range(500):
        text = list(base)
        for _ in range(rnd.randrange(1, 8)):
            pos = rnd.randrange(len(text))
            op = rnd.randrange(3)
            if op == 0:
                text.insert(pos, rnd.choice(pieces))
            elif op == 1:
                del text[pos]
            else:
                text[pos] = rnd.choice(pieces)
        try:
            docs = load_documents("".join(text), "full.yaml")
        except DocumentError as err:
            assert str(err).startswith("full.yaml")
            continue
        for doc in docs:
            problems, _ = validate_object(doc.data)
            assert not any("cannot be validated" in p.message for p in problems)
