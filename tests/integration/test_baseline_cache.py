"""The baseline kept across Jobs, against moto's S3: a second Job of the same base model on the
same eval data reuses the first Job's word error rates, and any change of content (one byte of
the model or of the eval data) or of how the figures are computed evaluates again. A false
baseline is worse than a slow one."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import boto3
import datasets
import pytest
from wft_trainer.baseline_cache import BaselineCache, baseline_once
from wft_trainer.results import EvalResult
from wft_trainer.storage import S3Store

pytestmark = pytest.mark.integration
BUCKET = "baseline-cache"
CACHE = ""  # set per test by the store fixture
FIGURES = (EvalResult(wer=0.5, wer_normalized=0.25, eval_loss=2.0, samples=2), None)


@pytest.fixture
def store(aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> S3Store:
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    # One cacheUri per test: the S3 server outlives a test, and the content here repeats.
    monkeypatch.setattr(sys.modules[__name__], "CACHE", f"s3://{BUCKET}/{tmp_path.name}/")
    return S3Store.from_spec(cache_dir=tmp_path / "s3-cache")


def model_folder(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text('{"d_model": 64}')
    (root / "model.safetensors").write_bytes(bytes(range(256)) * 4096)
    return root


def eval_split(root: Path, texts: list[str]) -> Any:
    """A prepared split as the data stage leaves it: Arrow files on disk."""
    split = datasets.Dataset.from_dict({"labels": [[1, 2, 3]] * len(texts), "text": texts})
    split.save_to_disk(str(root))
    return datasets.load_from_disk(str(root))


def inputs(split: Any, **changes: Any) -> dict[str, Any]:
    values = {
        "splits": [split, None],
        "engine": "transformers",
        "quantization": "none",
        "dtypes": ["torch.bfloat16", "torch.bfloat16"],
        "eval_batch": 32,
        "prompt": ["en", "transcribe", False],
    }
    return {**values, **changes}


def job(store: S3Store, model: Path, split: Any, **changes: Any) -> tuple[Any, int]:
    """One Job's baseline stage: (the figures, how many times it evaluated)."""
    calls = []

    def evaluate() -> Any:
        calls.append(1)
        return FIGURES

    cache = BaselineCache.for_run(CACHE, store, str(model))
    assert cache is not None
    return baseline_once(cache, evaluate, **inputs(split, **changes)), len(calls)


def test_a_second_job_reuses_the_baseline_of_the_same_content(
    store: S3Store, tmp_path: Path
) -> None:
    model = model_folder(tmp_path / "model")
    split = eval_split(tmp_path / "eval", ["the patient reports chest pain"])
    assert job(store, model, split) == (FIGURES, 1)
    assert job(store, model, split) == (FIGURES, 0)  # the second Job evaluates nothing

    # A copy of the same bytes elsewhere (another pod's folders) is the same content.
    copy = model_folder(tmp_path / "copy")
    assert (
        job(store, copy, eval_split(tmp_path / "eval2", ["the patient reports chest pain"]))[1] == 0
    )


@pytest.mark.parametrize(
    "change",
    ["model byte", "eval text", "eval batch", "quantization", "language", "general split"],
)
def test_any_change_of_content_or_settings_evaluates_again(
    store: S3Store, tmp_path: Path, change: str
) -> None:
    model = model_folder(tmp_path / "model")
    split = eval_split(tmp_path / "eval", ["the patient reports chest pain"])
    assert job(store, model, split)[1] == 1
    changes: dict[str, Any] = {}
    if change == "model byte":
        weights = model / "model.safetensors"
        data = bytearray(weights.read_bytes())
        data[1000] ^= 1
        weights.write_bytes(bytes(data))
    elif change == "eval text":
        split = eval_split(tmp_path / "eval2", ["the patient reports chest pains"])
    elif change == "eval batch":
        changes["eval_batch"] = 16
    elif change == "quantization":
        changes["quantization"] = "4bit"
    elif change == "language":
        changes["prompt"] = ["de", "transcribe", False]
    else:
        changes["splits"] = [split, eval_split(tmp_path / "general", ["good morning"])]
    assert job(store, model, split, **changes)[1] == 1


def test_nothing_is_cached_without_content_to_hash(store: S3Store, tmp_path: Path) -> None:
    # A Hugging Face id is no folder of ours: its files are not hashed, so no cache.
    assert BaselineCache.for_run(CACHE, store, "openai/whisper-large-v3") is None
    assert BaselineCache.for_run(None, store, str(model_folder(tmp_path / "m"))) is None
    # A split held only in memory has no bytes on disk to prove it the same: evaluate.
    in_memory = datasets.Dataset.from_dict({"text": ["a"]})
    model = model_folder(tmp_path / "model")
    assert job(store, model, in_memory)[1] == 1
    assert job(store, model, in_memory)[1] == 1


def test_an_unreadable_cache_costs_the_evaluation_not_the_run(
    store: S3Store, tmp_path: Path
) -> None:
    model = model_folder(tmp_path / "model")
    split = eval_split(tmp_path / "eval", ["the patient reports chest pain"])
    job(store, model, split)
    s3 = boto3.client("s3")
    for obj in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{tmp_path.name}/baselines/")["Contents"]:
        s3.put_object(Bucket=BUCKET, Key=obj["Key"], Body=b"not json")
    assert job(store, model, split) == (FIGURES, 1)
