"""`wft validate`: the corpus of invalid resources, each rejected with its field named.

Each case is a patch applied to a valid base resource, the field path the error must name, and
a word the message must contain (the allowed values or the rule), so a user can act on it.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from wft_api.validation import DocumentError, load_documents, validate_object

ROOT = Path(__file__).resolve().parents[2]
BASE: dict[str, Any] = {
    "apiVersion": "wft.dev/v1alpha1",
    "kind": "WhisperFineTune",
    "metadata": {"name": "ok"},
    "spec": {"dataset": {"uri": "s3://data-bucket/x/"}, "output": {"uri": "s3://out-bucket/y/"}},
}


def with_(path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    node = doc
    *parents, last = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    if value is DELETE:
        node.pop(last, None)
    else:
        node[last] = value
    return doc


DELETE = object()

# (case id, field to set, value, path named in the error, a word the message contains)
CASES: list[tuple[str, str, Any, str, str]] = [
    ("name-uppercase", "metadata.name", "Bad_Name", "metadata.name", "DNS-1123"),
    ("name-too-long", "metadata.name", "a" * 64, "metadata.name", "63"),
    ("wrong-api-version", "apiVersion", "wft.dev/v1", "apiVersion", "v1alpha1"),
    ("wrong-kind", "kind", "WhisperFinetune", "kind", "WhisperFineTune"),
    ("no-spec", "spec", DELETE, "spec", "required"),
    ("no-dataset", "spec.dataset", DELETE, "spec.dataset", "required"),
    ("no-output", "spec.output", DELETE, "spec.output", "required"),
    ("dataset-uri-missing", "spec.dataset.uri", DELETE, "spec.dataset.uri", "required"),
    ("dataset-uri-http", "spec.dataset.uri", "https://bucket/x", "spec.dataset.uri", "s3://"),
    ("dataset-bucket-upper", "spec.dataset.uri", "s3://My_Bucket/x", "spec.dataset.uri", "bucket"),
    ("dataset-format", "spec.dataset.format", "csv", "spec.dataset.format", "audiofolder"),
    ("eval-fraction-1", "spec.dataset.evalFraction", 1.0, "spec.dataset.evalFraction", "less than"),
    (
        "max-duration-31",
        "spec.dataset.maxDurationSeconds",
        31,
        "spec.dataset.maxDurationSeconds",
        "30",
    ),
    ("max-samples-0", "spec.dataset.maxSamples", 0, "spec.dataset.maxSamples", "at least 1"),
    (
        "skipped-fraction",
        "spec.dataset.maxSkippedFraction",
        1.5,
        "spec.dataset.maxSkippedFraction",
        "at most 1",
    ),
    (
        "durations-crossed",
        "spec.dataset.minDurationSeconds",
        30,
        "spec.dataset",
        "less than maxDurationSeconds",
    ),
    (
        "normalization",
        "spec.preprocessing.normalization",
        "lower",
        "spec.preprocessing.normalization",
        "whisper-english",
    ),
    ("lora-rank-negative", "spec.lora.rank", -1, "spec.lora.rank", "at least 1"),
    ("lora-rank-string", "spec.lora.rank", "eight", "spec.lora.rank", "integer"),
    ("lora-dropout-1", "spec.lora.dropout", 1, "spec.lora.dropout", "less than 1"),
    (
        "lora-target",
        "spec.lora.targetModules",
        ["q_proj", "gate_proj"],
        "spec.lora.targetModules[1]",
        "q_proj",
    ),
    (
        "lora-target-dupe",
        "spec.lora.targetModules",
        ["q_proj", "q_proj"],
        "spec.lora.targetModules",
        "duplicate",
    ),
    ("lora-target-empty", "spec.lora.targetModules", [], "spec.lora.targetModules", "at least 1"),
    ("quantization", "spec.quantization", "3bit", "spec.quantization", "4bit"),
    ("engine", "spec.engine", "deepspeed", "spec.engine", "unsloth"),
    (
        "unsloth-without-gpu",
        "spec",
        {**BASE["spec"], "engine": "unsloth", "resources": {"gpus": 0}},
        "spec",
        "needs a GPU",
    ),
    (
        "unsloth-on-several-gpus",
        "spec",
        {**BASE["spec"], "engine": "unsloth", "resources": {"gpus": 2}},
        "spec",
        "engine 'unsloth' trains on one GPU",
    ),
    (
        "unsloth-on-several-nodes",
        "spec",
        {**BASE["spec"], "engine": "unsloth", "resources": {"gpus": 1, "nodes": 2}},
        "spec",
        "with resources.nodes above 1 use engine 'transformers'",
    ),
    ("too-many-nodes", "spec.resources.nodes", 17, "spec.resources.nodes", "16"),
    ("no-nodes", "spec.resources.nodes", 0, "spec.resources.nodes", "1"),
    ("language", "spec.language", "english", "spec.language", "en"),
    ("translate-to-en", "spec.task", "translate", "spec", "language must not be 'en'"),
    ("task", "spec.task", "summarize", "spec.task", "transcribe"),
    (
        "english-only-model-in-german",
        "spec",
        {**BASE["spec"], "baseModel": "openai/whisper-tiny.en", "language": "de"},
        "spec",
        "English-only",
    ),
    (
        "ctranslate2-quantization",
        "spec.output",
        {"uri": "s3://out-bucket/y/", "ctranslate2": True, "ctranslate2Quantization": "int4"},
        "spec.output.ctranslate2Quantization",
        "int8_float16",
    ),
    ("base-model-with-spaces", "spec.baseModel", "my model", "spec.baseModel", "faster-whisper"),
    (
        "learning-rate-0",
        "spec.training.learningRate",
        0,
        "spec.training.learningRate",
        "greater than 0",
    ),
    (
        "learningrate-typo",
        "spec.training.learningrate",
        0.1,
        "spec.training.learningrate",
        "learningRate",
    ),
    ("batch-size-0", "spec.training.batchSize", 0, "spec.training.batchSize", "at least 1"),
    ("batch-size-word", "spec.training.batchSize", "big", "spec.training.batchSize", "auto"),
    (
        "steps-and-epochs",
        "spec.training",
        {"maxSteps": 10, "epochs": 1},
        "spec.training",
        "not both",
    ),
    ("optimizer", "spec.training.optimizer", "lion", "spec.training.optimizer", "adamw_torch"),
    (
        "checkpoint-steps-0",
        "spec.training.checkpointSteps",
        0,
        "spec.training.checkpointSteps",
        "at least 1",
    ),
    ("output-uri", "spec.output.uri", "/models/out", "spec.output.uri", "s3://"),
    ("merged-model-string", "spec.output.mergedModel", "yes", "spec.output.mergedModel", "boolean"),
    ("storage-endpoint", "spec.storage.endpoint", "minio:9000", "spec.storage.endpoint", "http"),
    (
        "storage-addressing",
        "spec.storage.addressingStyle",
        "dns",
        "spec.storage.addressingStyle",
        "path",
    ),
    (
        "storage-secret-name",
        "spec.storage.credentialsSecret",
        "S3_Creds",
        "spec.storage.credentialsSecret",
        "DNS-1123",
    ),
    ("gpus-negative", "spec.resources.gpus", -1, "spec.resources.gpus", "at least 0"),
    ("gpus-fraction", "spec.resources.gpus", 0.5, "spec.resources.gpus", "integer"),
    ("cpu-quantity", "spec.resources.cpu", "lots", "spec.resources.cpu", "quantity"),
    ("memory-quantity", "spec.resources.memory", "64 GB", "spec.resources.memory", "quantity"),
    (
        "toleration-operator",
        "spec.resources.tolerations",
        [{"key": "gpu", "operator": "In"}],
        "spec.resources.tolerations[0].operator",
        "Exists",
    ),
    (
        "node-selector-type",
        "spec.resources.nodeSelector",
        ["gpu"],
        "spec.resources.nodeSelector",
        "object",
    ),
    ("backoff-negative", "spec.backoffLimit", -1, "spec.backoffLimit", "at least 0"),
    ("deadline-0", "spec.activeDeadlineSeconds", 0, "spec.activeDeadlineSeconds", "at least 1"),
    ("suspend-string", "spec.suspend", "true", "spec.suspend", "boolean"),
    ("unknown-top-field", "spec.epochs", 3, "spec.epochs", "unknown field"),
    ("base-model-bad", "spec.baseModel", "not a model id!", "spec.baseModel", "Hugging Face"),
    ("queue-name", "spec.queueName", "Team Queue", "spec.queueName", "DNS-1123"),
]


@pytest.mark.parametrize(
    ("field", "value", "path", "word"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_invalid_resource_names_the_field(field: str, value: Any, path: str, word: str) -> None:
    problems, resource = validate_object(with_(field, value))
    assert resource is None
    named = [p for p in problems if p.path == path]
    assert named, f"no problem names {path}: {[str(p) for p in problems]}"
    assert any(word.lower() in p.message.lower() for p in named), [str(p) for p in named]


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30


def test_base_resource_is_valid() -> None:
    problems, resource = validate_object(BASE)
    assert problems == []
    assert resource is not None
    # Defaults a user relies on without writing them.
    assert resource.spec.base_model == "openai/whisper-large-v3"
    assert resource.spec.quantization == "4bit"
    assert resource.spec.lora.target_modules == ["q_proj", "k_proj", "v_proj", "out_proj"]


@pytest.mark.parametrize(
    "example", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name
)
def test_examples_validate(example: Path) -> None:
    for doc in load_documents(example.read_text(), str(example)):
        problems, resource = validate_object(doc.data)
        assert problems == [], [str(p) for p in problems]
        assert resource is not None


def test_yaml_syntax_error_names_the_line() -> None:
    with pytest.raises(DocumentError, match=r"f.yaml:3:\d+: YAML syntax error"):
        load_documents("a: 1\nb: [1,\n", "f.yaml")


def test_empty_file_says_so() -> None:
    with pytest.raises(DocumentError, match="empty"):
        load_documents("\n# only a comment\n", "f.yaml")


def wft(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wft_cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )


def test_cli_valid_file_prints_one_line_per_resource() -> None:
    result = wft(
        "validate",
        "-f",
        str(ROOT / "examples" / "full.yaml"),
        "-f",
        str(ROOT / "examples" / "minimal.yaml"),
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2 and all(line.endswith("valid") for line in lines)


def test_cli_invalid_file_lists_problems_and_exits_1(tmp_path: Path) -> None:
    bad = with_("spec.training.learningrate", 0.1)
    bad["spec"]["lora"] = {"rank": 0}
    good = copy.deepcopy(BASE)
    good["metadata"]["name"] = "second"
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(bad) + "---\n" + yaml.safe_dump(good))
    result = wft("validate", "-f", str(path))
    assert result.returncode == 1
    assert (
        "spec.training.learningrate: unknown field; did you mean 'learningRate'?" in result.stderr
    )
    assert "spec.lora.rank: 0 must be at least 1" in result.stderr
    assert "WhisperFineTune/second: valid" in result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "content",
    [
        "",
        "a: [1,\n",
        "- just\n- a list\n",
        "\x00\x01binary",
        "apiVersion: wft.dev/v1alpha1\nkind: WhisperFineTune\n",
        "42\n",
    ],
    ids=["empty", "syntax", "list", "binary", "no-metadata", "scalar"],
)
def test_cli_never_prints_a_traceback(tmp_path: Path, content: str) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(content)
    result = wft("validate", "-f", str(path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and result.stderr.strip()


def test_cli_missing_file() -> None:
    result = wft("validate", "-f", "does-not-exist.yaml")
    assert result.returncode == 1
    assert "does-not-exist.yaml: no such file" in result.stderr


def test_cli_structured_output_for_ci(tmp_path: Path) -> None:
    """`-o json` / `-o yaml`: one record per resource, the same verdicts and exit code."""
    bad = with_("spec.lora.rank", 0)
    path = tmp_path / "one-bad.yaml"
    path.write_text(yaml.safe_dump(BASE) + "---\n" + yaml.safe_dump(bad))
    result = wft("validate", "-f", str(path), "-o", "json")
    assert result.returncode == 1
    records = json.loads(result.stdout)
    assert [r["valid"] for r in records] == [True, False]
    assert records[1]["resource"] == "WhisperFineTune/ok" and records[1]["line"] > 1
    assert any("spec.lora.rank" in p for p in records[1]["problems"])
    as_yaml = yaml.safe_load(wft("validate", "-f", str(path), "-o", "yaml").stdout)
    assert as_yaml == records


def test_cli_version() -> None:
    result = wft("--version")
    assert result.returncode == 0 and result.stdout.startswith("wft ")
