"""Experiment (GPU): does compiling Whisper's encoder layers speed up the Unsloth path?

Unsloth compiles each *decoder* layer as one region but leaves the encoder eager, and the
encoder does most of the work (1500 frames against ~128 label tokens). This loads the model
through our own engine (`engines.load`, Unsloth 4-bit, the benchmark's LoRA), then times
training steps on synthetic inputs in one process, side by side:

  A. as Unsloth loads it (decoder regions only: the engine is told WFT_COMPILE_ENCODER=0);
  B. the same model after `engines.compile_encoder_layers` (what the engine now does by
     default: regional compilation of every encoder layer).

The data path is left out on purpose: this isolates the model's step. Printed: median step
time of each, the ratio, peak GPU memory, and the loss of each step (B continues A's training,
so its losses should keep falling on the same curve). Command in docs/benchmarks.md.
"""

# ruff: noqa: I001  (import order matters here: unsloth before transformers and peft)
from __future__ import annotations

import argparse
import os
import json
import statistics
import sys
import time
from pathlib import Path

import unsloth  # noqa: F401  (first: patches transformers and peft)
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_gpu import MODEL_ID, build_large_model
from wft_api.v1alpha1 import WhisperFineTuneSpec
from wft_trainer import engines


def timed_steps(loaded: engines.LoadedModel, batch: dict, optimizer, n: int, warm: int) -> dict:
    times, losses = [], []
    for i in range(warm + n):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = loaded.loss(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if i >= warm:
            times.append(time.perf_counter() - t0)
        losses.append(round(float(loss), 5))
    return {"medianStep": statistics.median(times), "steps": times, "losses": losses}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--processor", type=Path, default=Path(".gpu_assets/processor"))
    p.add_argument("--work", type=Path, default=Path("/tmp/wft-encoder-compile"))
    p.add_argument("--out", type=Path, default=None)  # absolute: the script changes folder
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=10)
    args = p.parse_args()
    processor = args.processor.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    os.chdir(args.work)  # the model id is a folder relative to here, as in train_gpu.py
    build_large_model(processor, Path(MODEL_ID))
    spec = WhisperFineTuneSpec.model_validate(
        {
            "baseModel": MODEL_ID,
            "engine": "unsloth",
            "quantization": "4bit",
            "dataset": {"uri": "s3://unused/"},
            "output": {"uri": "s3://unused/"},
            "lora": {
                "rank": 32,
                "alpha": 64,
                "targetModules": ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"],
            },
        }
    )
    os.environ["WFT_COMPILE_ENCODER"] = "0"  # A is Unsloth's own compilation only
    loaded = engines.load(spec, MODEL_ID)
    loaded.train_mode()
    gen = torch.Generator().manual_seed(0)
    batch = {
        "input_features": torch.randn(args.batch, 128, 3000, generator=gen).half(),
        "labels": torch.randint(0, 50000, (args.batch, 128), generator=gen),
    }
    params = loaded.trainable_parameters()
    optimizer = torch.optim.AdamW(params, lr=1e-4, fused=True)
    results = {}
    torch.cuda.reset_peak_memory_stats()
    results["A_decoderRegionsOnly"] = timed_steps(loaded, batch, optimizer, args.steps, warm=2)
    results["A_decoderRegionsOnly"]["peakGiB"] = torch.cuda.max_memory_allocated() / 2**30
    t0 = time.perf_counter()
    engines.compile_encoder_layers(loaded.model)
    torch.cuda.reset_peak_memory_stats()
    try:
        b = timed_steps(loaded, batch, optimizer, args.steps, warm=3)
    except Exception as err:  # an experiment: a failure to compile is a result too
        b = {"error": f"{type(err).__name__}: {err}"[:2000]}
    else:
        b["peakGiB"] = torch.cuda.max_memory_allocated() / 2**30
        b["compileAndWarmupSeconds"] = time.perf_counter() - t0
        results["speedupBoverA"] = results["A_decoderRegionsOnly"]["medianStep"] / b["medianStep"]
    results["B_encoderCompiledToo"] = b
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "encoder-compile.json").write_text(text)


if __name__ == "__main__":
    main()
