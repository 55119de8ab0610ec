"""GPU benchmark through the real entry point: Unsloth 4-bit against transformers bf16.

On a CUDA machine with no network (see docs/benchmarks.md for the exact command):
1. builds a random whisper-large-v3-shaped model next to the processor built offline beforehand
   (`--processor`, made by `--make-processor DIR` on a machine with openai-whisper);
2. starts moto's S3 server on loopback and uploads a generated dataset: 29.5 s clips at 8 kHz
   (tones + noise; the data stage resamples them to 16 kHz) with 48-85 word transcripts
   (labels of 57-124 tokens), as a JSONL manifest plus an eval manifest;
3. runs `python -m wft_trainer` twice with the same data, batch and LoRA: engine unsloth with
   quantization 4bit, then engine transformers with quantization none (bf16);
4. reads both runs' metrics.json from S3 and prints (and writes to --out) the comparison.

The base model is given as a relative folder name that looks like a Hugging Face id
(`bench/whisper-large-v3`): with HF_HUB_OFFLINE=1, from_pretrained takes the local folder, so
3 GB of weights do not have to pass through the in-memory S3 server.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

MODEL_ID = "bench/whisper-large-v3"
UNSLOTH_RUN, BASELINE_RUN = "unsloth-4bit", "transformers-none"
WORDS = [
    "the",
    "patient",
    "reports",
    "chest",
    "pain",
    "radiating",
    "to",
    "the",
    "left",
    "arm",
    "since",
    "this",
    "morning",
    "blood",
    "pressure",
    "one",
    "hundred",
    "forty",
    "over",
    "ninety",
    "heart",
    "rate",
    "regular",
    "no",
    "murmurs",
    "lungs",
    "clear",
    "electrocardiogram",
    "shows",
    "sinus",
    "rhythm",
    "troponin",
    "pending",
    "plan",
    "admit",
    "for",
    "observation",
    "aspirin",
    "given",
    "nitroglycerin",
    "as",
    "needed",
    "follow",
    "up",
    "cardiology",
    "consult",
    "tomorrow",
]


def make_processor(out: Path) -> None:
    from wft_local.tiny_whisper import build_processor

    build_processor(128).save_pretrained(str(out))
    import whisper

    shutil.copy(
        Path(whisper.__file__).parent / "normalizers" / "english.json", out / "normalizer.json"
    )


def build_large_model(processor_dir: Path, out: Path) -> None:
    import torch
    from transformers import WhisperForConditionalGeneration
    from wft_local import tiny_whisper

    if (out / "config.json").exists():
        return
    config = tiny_whisper.whisper_config(tiny_whisper.LARGE_V3)
    torch.manual_seed(0)
    with torch.device("cuda"):  # random init of 1.5B parameters is minutes on the CPU
        model = WhisperForConditionalGeneration(config).to(torch.bfloat16)
    model.generation_config = tiny_whisper.generation_config()
    model.save_pretrained(str(out))
    for f in processor_dir.iterdir():
        shutil.copy(f, out / f.name)
    del model
    torch.cuda.empty_cache()


def write_dataset(root: Path, n_train: int, n_eval: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    rate, seconds = 8000, 29.5
    t = np.arange(int(rate * seconds)) / rate
    (root / "audio").mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("eval", n_eval)):
        lines = []
        for i in range(n):
            name = f"audio/{split}-{i:04d}.wav"
            pitch = rng.uniform(150, 400)
            sig = 0.2 * np.sin(2 * np.pi * pitch * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2
            sig = sig + 0.02 * rng.standard_normal(t.size)
            with wave.open(str(root / name), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(rate)
                w.writeframes((np.clip(sig, -1, 1) * 32767).astype("<i2").tobytes())
            # 48-85 words: labels of 57-124 tokens, so every batch pads to the same 128-token
            # bucket, as the baseline's inputs (64-128 tokens) do; a wider batch would cost the
            # compiled Unsloth decoder a one-time recompile of about 2 s within the timed steps.
            text = " ".join(rng.choice(WORDS, size=int(rng.integers(48, 86))))
            lines.append(json.dumps({"audio_filepath": name, "text": text, "duration": seconds}))
        (root / f"{split}.jsonl").write_text("\n".join(lines) + "\n")


def trainer_config(
    engine: str,
    quantization: str,
    batch: int | str,
    steps: int,
    checkpointing: str = "auto",
    job: str = "",
    cache_uri: str | None = None,
    compiled: str = "all",
) -> dict[str, Any]:
    name = f"{engine}-{quantization}" + ("" if checkpointing == "auto" else f"-{checkpointing}")
    name += "" if compiled == "all" else f"-compile-{compiled}"
    name += f"-{job}" if job else ""
    cfg = {
        "resource": {"namespace": "bench", "name": name, "generation": 1},
        "reportStatus": False,
        "spec": {
            "baseModel": MODEL_ID,
            "language": "en",
            "engine": engine,
            "quantization": quantization,
            "dataset": {
                "uri": "s3://bench-data/cardio/",
                "format": "manifest",
                "manifest": "train.jsonl",
                "evalManifest": "eval.jsonl",
            },
            "lora": {
                "rank": 32,
                "alpha": 64,
                "targetModules": ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"],
            },
            "training": {
                "maxSteps": steps,
                "batchSize": batch,
                "learningRate": 1e-4,
                "warmupSteps": 5,
                "checkpointSteps": 10_000,
                "seed": 3407,
                "gradientCheckpointing": checkpointing,
            },
            "output": {"uri": "s3://bench-out/runs/"},
        },
    }
    if cache_uri:
        cfg["spec"]["dataset"]["cacheUri"] = cache_uri
    return cfg


def batch_size(text: str) -> int | str:
    return text if text == "auto" else int(text)


def start_s3(port: int) -> tuple[Any, dict[str, str]]:
    """moto's S3 server on loopback (the GPU machine has no network), and the trainer's
    environment pointing at it (also set in this process, for uploading and reading back)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
    return server, env


def run_engine(
    cfg: dict[str, Any], env: dict[str, str], log: Path, profile: Path | None = None
) -> tuple[int, float]:
    t0 = time.monotonic()
    # cProfile slows Python-heavy stages (by up to 2x): its figures show where, not how long.
    profiled = ["-m", "cProfile", "-o", str(profile)] if profile else []
    with open(log, "w") as out:
        proc = subprocess.run(
            [sys.executable, *profiled, "-m", "wft_trainer"],
            env={**env, "WFT_CONFIG": json.dumps(cfg)},
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    return proc.returncode, time.monotonic() - t0


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser()
    p.add_argument("--make-processor", type=Path, help="only build the processor into DIR")
    p.add_argument("--processor", type=Path, default=Path(".gpu_assets/processor"))
    p.add_argument("--work", type=Path, default=None, help="work folder (default: a new temp dir)")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--batch", type=batch_size, default=32, help="a number or 'auto'")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--train-samples", type=int, default=128)
    p.add_argument("--eval-samples", type=int, default=8)
    p.add_argument(
        "--engines",
        default="unsloth:4bit,transformers:none",
        help="runs as engine:quantization[:gradientCheckpointing[:compiled]], comma-separated "
        "(checkpointing auto unless given: off, on or offload; compiled: which of our layer "
        "compilations run, all (default), encoder or none: WFT_COMPILE_ENCODER/_DECODER)",
    )
    p.add_argument(
        "--compile-cache",
        action="store_true",
        help="run each engine as two Jobs sharing a dataset.cacheUri, each with empty compiler "
        "folders of its own (as two pods would have): the second finds the first's kernels",
    )
    p.add_argument(
        "--cprofile",
        action="store_true",
        help="run each trainer under cProfile: profile-<run>.prof next to its log",
    )
    p.add_argument(
        "--gpu-memory-fraction",
        type=float,
        default=None,
        help="cap each trainer's share of GPU memory (torch's per-process fraction), so that "
        "`--batch auto` meets a real out-of-memory wall on a large GPU",
    )
    p.add_argument(
        "--fp16-only",
        action="store_true",
        help="make torch report no bf16 support, as on a T4 or V100: the transformers engine "
        "then trains in float16 with loss scaling (Unsloth reads the GPU's capability itself)",
    )
    args = p.parse_args(argv)
    if args.make_processor:
        make_processor(args.make_processor)
        return {}

    import boto3

    work = (args.work or Path(tempfile.mkdtemp(prefix="wft-bench-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    out = (args.out or work).resolve()
    out.mkdir(parents=True, exist_ok=True)
    processor = args.processor.resolve()
    os.chdir(work)  # the base model id is a folder relative to here
    t0 = time.monotonic()
    build_large_model(processor, work / MODEL_ID)
    print(f"model built in {time.monotonic() - t0:.1f}s", flush=True)

    server, env = start_s3(5123)
    # The allocator mode both engines choose for themselves (engines.preload), set here as well
    # because the sitecustomize below touches the allocator before the trainer's preload runs.
    env.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    site_lines = []
    if args.gpu_memory_fraction:
        site_lines.append(f"torch.cuda.set_per_process_memory_fraction({args.gpu_memory_fraction})")
    if args.fp16_only:
        site_lines.append("torch.cuda.is_bf16_supported = lambda *args, **kwargs: False")
    if site_lines:
        site = work / "sitecustomize"
        site.mkdir(exist_ok=True)
        # sitecustomize runs at interpreter start, before the trainer imports anything.
        (site / "sitecustomize.py").write_text("\n".join(["import torch", *site_lines, ""]))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    s3 = boto3.client("s3")
    for bucket in ("bench-data", "bench-out"):
        s3.create_bucket(Bucket=bucket)
    data = work / "data"
    write_dataset(data, args.train_samples, args.eval_samples)
    for f in sorted(data.rglob("*")):
        if f.is_file():
            s3.upload_file(str(f), "bench-data", f"cardio/{f.relative_to(data).as_posix()}")
    print(f"dataset uploaded at {time.monotonic() - t0:.1f}s", flush=True)

    results: dict[str, Any] = {"batch": args.batch, "steps": args.steps, "runs": {}}
    try:
        jobs = ["job1", "job2"] if args.compile_cache else [""]
        if args.compile_cache:
            # No compiler folder shared through the environment or the machine's defaults: each
            # Job gets its own under its work folder (compile_cache.ensure_folders).
            for variable in (
                "UNSLOTH_COMPILE_LOCATION",
                "TORCHINDUCTOR_CACHE_DIR",
                "TRITON_CACHE_DIR",
            ):
                env.pop(variable, None)
        for item, job in [(i, j) for i in args.engines.split(",") for j in jobs]:
            engine, quant, *rest = item.split(":")
            checkpointing, compiled = (rest + ["auto", "all"][len(rest) :])[:2]
            cfg = trainer_config(
                engine,
                quant,
                args.batch,
                args.steps,
                checkpointing,
                job=job,
                cache_uri="s3://bench-out/cache/" if args.compile_cache else None,
                compiled=compiled,
            )
            run = cfg["resource"]["name"]
            env["WFT_WORK_DIR"] = str(work / f"run-{run}")
            eager = {"all": [], "encoder": ["DECODER"], "none": ["ENCODER", "DECODER"]}[compiled]
            run_env = {**env, **{f"WFT_COMPILE_{part}": "0" for part in eager}}
            profile = out / f"profile-{run}.prof" if args.cprofile else None
            code, wall = run_engine(cfg, run_env, out / f"log-{run}.txt", profile)
            key = f"runs/bench/{run}/generation-1/metrics.json"
            metrics = (
                json.loads(s3.get_object(Bucket="bench-out", Key=key)["Body"].read())
                if code == 0
                else None
            )
            results["runs"][run] = {"exit": code, "wallSeconds": wall, "metrics": metrics}
            print(f"{run}: exit {code} in {wall:.0f}s", flush=True)
            # After every run: a device call that runs out of time keeps the finished ones.
            results["summary"] = summarize(results["runs"])
            (out / "results.json").write_text(json.dumps(results, indent=2))
    finally:
        server.stop()
    print(json.dumps(results["summary"], indent=2))
    return results


def summarize(runs: dict[str, Any]) -> dict[str, Any]:
    from wft_trainer.results import RunMetrics

    rows = {}
    for run, r in runs.items():
        m = RunMetrics.model_validate(r["metrics"]) if r.get("metrics") else None
        if m is None:
            rows[run] = {"exit": r.get("exit")}
            continue
        rows[run] = {
            "batchSize": m.batch_size,
            "gradientCheckpointing": m.gradient_checkpointing.model_dump()
            if m.gradient_checkpointing
            else None,
            "samplesPerSecond": m.samples_per_second,
            "mixedPrecision": m.mixed_precision,
            "lossScale": m.loss_scale,
            "peakGpuGiB": (m.peak_gpu_memory_bytes or 0) / 2**30,
            "hostPeakRssGiB": m.host_peak_rss_bytes / 2**30,
            "timeToFirstStepSeconds": m.time_to_first_step_seconds,
            "firstStepSeconds": m.first_step_seconds,
            "steps": m.steps,
            "lossFirstLast": [m.loss_curve[0][1], m.loss_curve[-1][1]] if m.loss_curve else None,
            "secondsPerStage": m.seconds_per_stage,
            "compileCache": m.compile_cache.model_dump(by_alias=True) if m.compile_cache else None,
            "werBaselineFinal": [m.baseline.wer, m.final.wer],
        }
    # The goal's pair: Unsloth 4-bit against transformers bf16 at the same batch.
    u, t = rows.get(UNSLOTH_RUN, {}), rows.get(BASELINE_RUN, {})
    if u.get("samplesPerSecond") and t.get("samplesPerSecond"):
        rows["ratio"] = {
            "speed": u["samplesPerSecond"] / t["samplesPerSecond"],
            "gpuMemory": u["peakGpuGiB"] / t["peakGpuGiB"] if t["peakGpuGiB"] else None,
        }
    return rows


if __name__ == "__main__":
    main()
