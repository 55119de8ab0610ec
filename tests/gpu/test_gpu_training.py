"""The GPU run (opt-in: `pytest -m gpu`): Unsloth 4-bit and transformers bf16 through the real
entry point (`python -m wft_trainer`), on a random whisper-large-v3-shaped model, same data and
batch, data loading included. Figures go to WFT_BENCH_OUT (results.json, logs) and into
docs/benchmarks.md by hand, with the command that produced them.

Needs: CUDA, the wheels of scripts/gpu-wheels.sh (Unsloth, boto3, moto, jiwer, soundfile, soxr),
and the processor built offline by `benchmarks/train_gpu.py --make-processor .gpu_assets/processor`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.gpu

REPO = Path(__file__).resolve().parents[2]


def bench(tmp_path: Path, steps: int, *args: str) -> tuple[dict[str, Any], Path]:
    """benchmarks/train_gpu.py's runs (WFT_BENCH_OUT, _STEPS and _BATCH override the folder,
    the steps and the batch): its results and the folder holding each run's log."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    import sys

    sys.path.insert(0, str(REPO / "benchmarks"))
    from train_gpu import main

    out = Path(os.environ.get("WFT_BENCH_OUT") or tmp_path)
    results = main(
        [
            "--processor", str(REPO / ".gpu_assets" / "processor"),
            "--work", str(tmp_path / "work"),
            "--out", str(out),
            "--steps", str(steps),
            "--batch", os.environ.get("WFT_BENCH_BATCH", "32"),
            "--eval-samples", "4",
            *args,
        ]
    )  # fmt: skip
    return results, out


def test_unsloth_4bit_against_transformers_bf16(tmp_path: Path) -> None:
    import torch

    steps = int(os.environ.get("WFT_BENCH_STEPS", "30"))
    results, out = bench(tmp_path, steps)
    from wft_trainer.results import RunMetrics

    runs = results["runs"]
    metrics: dict[str, RunMetrics] = {}
    for run, engine in (("unsloth-4bit", "unsloth"), ("transformers-none", "transformers")):
        assert runs[run]["exit"] == 0, (out / f"log-{run}.txt").read_text()[-3000:]
        m = metrics[run] = RunMetrics.model_validate(runs[run]["metrics"])
        assert m.engine == engine and m.steps == steps
        assert m.baseline.wer is not None and m.final.wer is not None
        losses = [loss for _, loss in m.loss_curve]
        assert all(loss == loss for loss in losses)  # no NaN
        assert losses[-1] < losses[0]
    assert metrics["unsloth-4bit"].quantization == "4bit"
    ratio = results["summary"]["ratio"]
    # Each engine at the memory policy `auto` picked for it (without checkpointing where the
    # activations fit: both on an H200 at batch 32). `engine: auto` must pick the faster of the
    # two on this GPU for this model (run 23, H200: transformers with compiled layers, 1.22x);
    # the doc has the figures.
    from wft_api.v1alpha1 import WhisperFineTuneSpec
    from wft_trainer.engines import choose_engine

    spec = WhisperFineTuneSpec.model_validate(
        {
            "baseModel": "openai/whisper-large-v3",
            "dataset": {"uri": "s3://data/x/"},
            "output": {"uri": "s3://out/x/"},
        }
    )
    faster = "unsloth" if ratio["speed"] > 1.0 else "transformers"
    assert choose_engine(spec) == faster, results["summary"]
    total = torch.cuda.get_device_properties(0).total_memory
    for run in ("unsloth-4bit", "transformers-none"):
        m = metrics[run]
        assert m.gradient_checkpointing is not None
        assert m.gradient_checkpointing.mode in ("off", "on", "offload")
        assert m.peak_gpu_memory_bytes is not None
        assert m.peak_gpu_memory_bytes < 0.95 * total, m.gradient_checkpointing  # it fitted


def test_a_second_job_starts_sooner_with_the_compile_cache(tmp_path: Path) -> None:
    """Two Jobs of what `engine: auto` picks on this GPU, sharing only a cacheUri (each with
    empty compiler folders, as two pods have): the second restores the first's inductor and
    Triton kernels and the first's baseline word error rates, compiles nothing new, reaches
    its first step sooner, and trains to the same numbers. The first Job's baseline evaluation
    runs on the base model alone (the zero adapter left out) and without compiling
    (docs/benchmarks.md, run 24)."""
    steps = int(os.environ.get("WFT_BENCH_STEPS", "12"))
    results, out = bench(tmp_path, steps, "--engines", "auto:none", "--compile-cache")
    runs = results["runs"]
    for run in ("auto-none-job1", "auto-none-job2"):
        assert runs[run]["exit"] == 0, (out / f"log-{run}.txt").read_text()[-3000:]
    # The first Job evaluates the base model (without the zero adapter); the second finds its
    # figures under the cacheUri (same model files, eval data, settings: baseline_cache.py).
    assert "on the base model alone" in (out / "log-auto-none-job1.txt").read_text()
    assert "baseline cache: the base model's" in (out / "log-auto-none-job2.txt").read_text()
    from wft_trainer.results import RunMetrics

    first, second = (
        RunMetrics.model_validate(runs[f"auto-none-job{i}"]["metrics"]) for i in (1, 2)
    )
    assert first.compile_cache and second.compile_cache
    assert first.compile_cache.saved and second.compile_cache.restored_files > 0
    compiled = second.compile_cache.compiler or {}
    assert compiled.get("fxgraph_cache_miss", 0) == 0, compiled  # every graph from the cache
    assert compiled.get("fxgraph_cache_hit", 0) > 0, compiled
    assert first.first_step_seconds and second.first_step_seconds
    assert second.first_step_seconds < first.first_step_seconds
    assert first.time_to_first_step_seconds and second.time_to_first_step_seconds
    assert second.time_to_first_step_seconds < first.time_to_first_step_seconds
    assert second.baseline == first.baseline
    for (_, a), (_, b) in zip(first.loss_curve, second.loss_curve, strict=True):
        assert a == pytest.approx(b, rel=1e-3)  # atomics in the backward: not bit for bit
