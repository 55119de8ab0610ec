"""`wft train` end to end on the CPU against moto's S3: espeak-ng speech, the tiny random
Whisper as an s3:// base model, a few dozen LoRA steps, results in S3."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from wft_trainer.results import RunMetrics

from .trainer_fixtures import spec, stage_s3

pytestmark = pytest.mark.integration

BUCKET = "e2e-train"
RUN = "out/team-a/dictation/generation-1/"


@pytest.fixture
def staged(aws_env: str, tiny_model_dir: Path, tmp_path: Path) -> Any:
    s3 = boto3.client("s3")
    stage_s3(s3, tmp_path, tiny_model_dir, BUCKET)
    resource = {
        "apiVersion": "wft.dev/v1alpha1",
        "kind": "WhisperFineTune",
        "metadata": {"name": "dictation", "namespace": "team-a"},
        "spec": spec(BUCKET),
    }
    path = tmp_path / "finetune.yaml"
    path.write_text(yaml.safe_dump(resource))
    return s3, path


def test_wft_train_end_to_end(
    staged: Any, tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch
    from peft import PeftModel
    from transformers import WhisperForConditionalGeneration
    from wft_cli.main import main

    s3, finetune = staged
    work = tmp_path / "work"
    assert main(["train", "-f", str(finetune), "--work-dir", str(work), "--no-progress"]) == 0
    summary = capsys.readouterr().out
    assert f"s3://{BUCKET}/{RUN}" in summary and "WER:" in summary

    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=RUN)["Contents"]}
    for name in (
        "adapter_config.json",
        "adapter_model.safetensors",
        "metrics.json",
        "report.json",
        "README.md",
        "tokenizer.json",
        "_SUCCESS",
    ):
        assert RUN + name in keys, name
    # Checkpoints were written during training (test_trainer_resume.py resumes from one) and
    # removed once the run succeeded: the folder holds the result only.
    assert not any(k.startswith(RUN + "checkpoints/") for k in keys)

    metrics = json.loads(s3.get_object(Bucket=BUCKET, Key=RUN + "metrics.json")["Body"].read())
    assert metrics["engine"] == "transformers" and metrics["steps"] == 30
    assert metrics["batchSize"] == 4
    for when in ("baseline", "final"):
        assert metrics[when]["wer"] >= 0.0 and metrics[when]["werNormalized"] >= 0.0
        assert metrics[when]["samples"] == 4
    losses = [loss for _, loss in metrics["lossCurve"]]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.3, losses  # it learned something
    assert metrics["final"]["evalLoss"] < metrics["baseline"]["evalLoss"]
    assert metrics["dataset"]["samples"] == 12 and metrics["samplesPerSecond"] > 0
    assert "unquantized" in " ".join(metrics["notes"])
    # The file is RunMetrics: it reads into the model and the model writes it back unchanged.
    assert json.loads(RunMetrics.model_validate(metrics).to_json()) == metrics
    report = json.loads(s3.get_object(Bucket=BUCKET, Key=RUN + "report.json")["Body"].read())
    assert report["samples"] == 12
    card = s3.get_object(Bucket=BUCKET, Key=RUN + "README.md")["Body"].read().decode()
    assert f"s3://{BUCKET}/model/" in card and "fine-tuned" in card

    # The adapter loads with plain peft onto the base and changes its output.
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        s3.download_file(BUCKET, RUN + name, str(adapter / name))
    base = WhisperForConditionalGeneration.from_pretrained(tiny_model_dir)
    feats = torch.randn(1, 80, 3000)
    ids = torch.tensor([[50258, 50259, 50360, 50364]])
    with torch.no_grad():
        before = base(input_features=feats, decoder_input_ids=ids).logits
        tuned = PeftModel.from_pretrained(base, str(adapter))
        after = tuned(input_features=feats, decoder_input_ids=ids).logits
    assert not torch.allclose(before, after, atol=1e-4)

    # A finished generation is never overwritten: the same spec again trains nothing and
    # reports the run; another spec in the same generation is refused, saying what works.
    assert main(["train", "-f", str(finetune), "--work-dir", str(work), "--no-progress"]) == 0
    out = capsys.readouterr()
    assert "nothing trained again" in out.err and f"s3://{BUCKET}/{RUN}" in out.out
    resource = yaml.safe_load(finetune.read_text())
    resource["spec"]["training"]["learningRate"] = 3e-3
    finetune.write_text(yaml.safe_dump(resource))
    assert main(["train", "-f", str(finetune), "--work-dir", str(work), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "OutputExists" in err and "already holds a finished run of another spec" in err
    assert "metadata.generation" in err


def test_job_entry_point_fails_fast_on_a_cause_a_retry_cannot_fix(
    aws_env: str, tmp_path: Path
) -> None:
    """`python -m wft_trainer` as the Job runs it: a missing bucket exits 3 (the Job's
    podFailurePolicy then fails at once) and says why in the termination message."""
    import os
    import subprocess
    import sys

    from wft_api import ResourceRef, TrainerConfig, WhisperFineTuneSpec

    config = TrainerConfig(
        resource=ResourceRef(namespace="team-a", name="nobucket", generation=1),
        spec=WhisperFineTuneSpec.model_validate(spec("no-such-bucket")),
        report_status=False,
    )
    log = tmp_path / "termination-log"
    env = {
        **os.environ,
        "WFT_CONFIG": config.model_dump_json(by_alias=True),
        "WFT_TERMINATION_LOG": str(log),
        "WFT_WORK_DIR": str(tmp_path / "work"),
        "WFT_CACHE_DIR": str(tmp_path / "cache"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "wft_trainer"], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 3, result.stderr[-2000:]
    reported = json.loads(log.read_text())
    assert reported["reason"] == "S3NotFound"
    assert "no-such-bucket" in reported["message"]


def test_an_empty_dataset_prefix_fails_before_the_model_is_fetched(
    aws_env: str, tmp_path: Path
) -> None:
    """A typo in spec.dataset.uri must not wait for a base-model download to be reported."""
    import boto3
    from wft_api import ResourceRef, TrainerConfig, WhisperFineTuneSpec
    from wft_trainer.errors import TrainerFailure
    from wft_trainer.pipeline import run
    from wft_trainer.status import Reporter

    boto3.client("s3").create_bucket(Bucket="typo-bucket")
    body = spec("typo-bucket")
    body["baseModel"] = "openai/whisper-large-v3"  # would need the hub: must never be reached
    config = TrainerConfig(
        resource=ResourceRef(name="typo"),
        spec=WhisperFineTuneSpec.model_validate(body),
        report_status=False,
    )
    with pytest.raises(TrainerFailure) as err:
        run(config, Reporter(), tmp_path)
    assert err.value.reason == "S3NotFound"
    assert "spec.dataset.uri" in err.value.message and "typo-bucket" in err.value.message


def test_merged_model_loads_without_peft_and_matches_the_adapter(
    aws_env: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """`mergedModel: true`: merged/ is a plain Whisper that computes what base + adapter does."""
    import torch
    from peft import PeftModel
    from transformers import WhisperForConditionalGeneration
    from wft_api import ResourceRef, TrainerConfig, WhisperFineTuneSpec
    from wft_trainer.pipeline import run
    from wft_trainer.status import Reporter

    s3 = boto3.client("s3")
    stage_s3(s3, tmp_path, tiny_model_dir, "merge-bucket", n_train=8)
    body = spec("merge-bucket", maxSteps=4, checkpointSteps=100)
    body["output"]["mergedModel"] = True
    config = TrainerConfig(
        resource=ResourceRef(namespace="team-a", name="merged"),
        spec=WhisperFineTuneSpec.model_validate(body),
        report_status=False,
    )
    result = run(config, Reporter(), tmp_path / "work")
    run_prefix = result.run_uri.removeprefix("s3://merge-bucket/")
    local = tmp_path / "downloaded"
    for obj in s3.list_objects_v2(Bucket="merge-bucket", Prefix=run_prefix)["Contents"]:
        target = local / obj["Key"][len(run_prefix) :]
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file("merge-bucket", obj["Key"], str(target))

    merged = WhisperForConditionalGeneration.from_pretrained(local / "merged")
    assert merged.dtype in (torch.float16, torch.bfloat16)  # a 16-bit export
    merged = merged.float().eval()
    base = WhisperForConditionalGeneration.from_pretrained(tiny_model_dir).eval()
    adapted = PeftModel.from_pretrained(base, str(local)).eval()
    features = torch.randn(1, 80, 3000, generator=torch.Generator().manual_seed(0))
    tokens = torch.tensor([[50258, 50259, 50360, 50364]])
    with torch.no_grad():
        want = adapted(input_features=features, decoder_input_ids=tokens).logits
        got = merged(input_features=features, decoder_input_ids=tokens).logits
    # 16-bit export: equal to the adapter's output within bfloat16/float16 rounding.
    assert torch.allclose(got.float(), want.float(), atol=5e-2, rtol=1e-2)


@pytest.fixture
def no_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """As on a cluster with no route to the hub: an endpoint nothing listens on, an empty cache."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


@pytest.mark.parametrize("offline_flag", [False, True], ids=["unreachable", "HF_HUB_OFFLINE"])
def test_a_hub_id_without_a_hub_fails_in_seconds_naming_the_field(
    aws_env: str,
    tiny_model_dir: Path,
    tmp_path: Path,
    no_hub: None,
    monkeypatch: pytest.MonkeyPatch,
    offline_flag: bool,
) -> None:
    import time

    from huggingface_hub import constants
    from wft_api import ResourceRef, TrainerConfig, WhisperFineTuneSpec
    from wft_trainer.errors import TrainerFailure
    from wft_trainer.pipeline import run
    from wft_trainer.status import Reporter

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline_flag)
    bucket = f"no-hub-{int(offline_flag)}"
    stage_s3(boto3.client("s3"), tmp_path, tiny_model_dir, bucket, n_train=2)
    body = spec(bucket)
    body["baseModel"] = "openai/whisper-large-v3"
    config = TrainerConfig(
        resource=ResourceRef(name="no-hub"),
        spec=WhisperFineTuneSpec.model_validate(body),
        report_status=False,
    )
    started = time.monotonic()
    with pytest.raises(TrainerFailure) as err:
        run(config, Reporter(), tmp_path / "work")
    assert time.monotonic() - started < 20  # transformers alone retries for minutes
    assert err.value.reason == "ModelLoadFailed"  # permanent: the Job does not retry it
    message = err.value.message
    assert "spec.baseModel openai/whisper-large-v3" in message
    assert "HF_HUB_OFFLINE" in message if offline_flag else "127.0.0.1:9" in message
    assert "s3://" in message and "faster-whisper" in message and "wft model import" in message


def test_wft_prepare_needs_no_hub_for_an_openai_id(
    aws_env: str,
    tiny_model_dir: Path,
    tmp_path: Path,
    no_hub: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The built-in processor of openai/whisper-large-v3: 128 mel bins, large-v3's ids."""
    from datasets import load_from_disk
    from huggingface_hub import constants
    from wft_cli.main import main

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    stage_s3(boto3.client("s3"), tmp_path, tiny_model_dir, "prep-offline", n_train=3)
    body = spec("prep-offline")
    body["baseModel"] = "openai/whisper-large-v3"
    resource = {"apiVersion": "wft.dev/v1alpha1", "kind": "WhisperFineTune",
                "metadata": {"name": "offline"}, "spec": body}  # fmt: skip
    path = tmp_path / "finetune.yaml"
    path.write_text(yaml.safe_dump(resource))
    out = tmp_path / "prepared"
    assert main(["prepare", "-f", str(path), "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["numMelBins"] == 128 and report["samples"] == 3
    train = load_from_disk(str(next(out.glob("prepared/*/train"))))
    labels = train[0]["labels"]
    assert labels[:4] == [50258, 50259, 50360, 50364]  # <|sot|><|en|><|transcribe|><|notimestamps|>
    assert "samples: 3 train" in capsys.readouterr().out


def test_a_failed_export_fails_the_run_and_leaves_no_success_marker(
    aws_env: str, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ctranslate2: true` in an image without the ctranslate2 package: the run fails with
    ExportFailed, saying what to install, before the data stage (not after the training), and
    the folder is never marked finished."""
    import sys

    from wft_api import ResourceRef, TrainerConfig, WhisperFineTuneSpec
    from wft_trainer.errors import TrainerFailure
    from wft_trainer.pipeline import run
    from wft_trainer.status import Reporter

    s3 = boto3.client("s3")
    stage_s3(s3, tmp_path, tiny_model_dir, "export-fails", n_train=4)
    body = spec("export-fails", maxSteps=2, checkpointSteps=100)
    body["output"]["ctranslate2"] = True
    config = TrainerConfig(
        resource=ResourceRef(name="export"),
        spec=WhisperFineTuneSpec.model_validate(body),
        report_status=False,
    )
    monkeypatch.setitem(sys.modules, "ctranslate2.converters", None)  # as if not installed
    with pytest.raises(TrainerFailure) as err:
        run(config, Reporter(), tmp_path / "work")
    assert err.value.reason == "ExportFailed"
    assert "whisper-finetune[serving]" in err.value.message
    assert not (tmp_path / "work" / "data").exists()  # no data prepared, nothing trained
    listing = s3.list_objects_v2(Bucket="export-fails", Prefix="out/").get("Contents", [])
    assert not any(o["Key"].endswith("_SUCCESS") for o in listing)


def test_a_second_job_takes_the_baseline_of_the_same_model_and_data_from_the_cache(
    aws_env: str, tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two resources of the same base model and eval data sharing a cacheUri, each Job on a
    fresh work folder (a pod of its own): the second reuses the first's baseline word error
    rates (baseline_cache.py proves the content the same, byte for byte) and says so; a third
    without the cache evaluates afresh and finds the same figures."""
    from wft_cli.main import main

    s3 = boto3.client("s3")
    stage_s3(s3, tmp_path, tiny_model_dir, BUCKET)
    metrics = []
    for name in ("first", "second", "uncached"):
        body = spec(BUCKET, maxSteps=2, checkpointSteps=100)
        if name != "uncached":
            body["dataset"]["cacheUri"] = f"s3://{BUCKET}/cache/"
        resource = {
            "apiVersion": "wft.dev/v1alpha1",
            "kind": "WhisperFineTune",
            "metadata": {"name": name, "namespace": "team-a"},
            "spec": body,
        }
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(resource))
        work = tmp_path / f"work-{name}"
        assert main(["train", "-f", str(path), "--work-dir", str(work), "--no-progress"]) == 0
        capsys.readouterr()
        key = f"out/team-a/{name}/generation-1/metrics.json"
        metrics.append(json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()))
    first, second, uncached = metrics
    assert any("baseline cache: saved" in note for note in first["notes"])
    assert any("baseline cache: the base model's" in note for note in second["notes"])
    assert not any("baseline cache" in note for note in uncached["notes"])
    # What the cache gave the second Job is what evaluating the base model gives.
    assert second["baseline"] == uncached["baseline"]
    assert first["secondsPerStage"]["baselineEval"] > second["secondsPerStage"]["baselineEval"]
