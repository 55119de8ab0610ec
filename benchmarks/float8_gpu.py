"""Float8 matmuls for the frozen base weights (issue 19, point 4): measure before keeping.

On a Hopper GPU, torchao's float8 training (`convert_to_float8_training`) swaps a linear layer
for one that casts its input, weight and gradient to float8 with dynamic scales and multiplies
them with `torch._scaled_mm`, at twice bf16's matrix throughput. Under LoRA only the base layers
are frozen and large, so only they are converted (peft's `base_layer`s); the adapters stay bf16.

One process, the same random whisper-large-v3-shaped base (bf16, from a config) loaded through
the transformers engine, the same LoRA (r=32 on q,k,v,out_proj,fc1,fc2), the same 30 batches
(random 30 s features, 128-token labels), the same optimizer, three variants side by side:
  bf16-eager      the transformers engine as it trains today (checkpointing off: it fits)
  bf16-compiled   every encoder and decoder layer compiled (inductor), the fair baseline
  float8-compiled the base layers in float8, every layer compiled (torchao wants compile)
Prints and writes samples/s, peak GPU memory and the loss curves; the keep-or-drop rule is
issue 19's: faster side by side and the same loss curve within noise over 30 steps.

    python3 benchmarks/float8_gpu.py --processor .gpu_assets/processor --out $OUT/float8.json
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_gpu import build_large_model, trainer_config

VARIANTS = ("bf16-eager", "bf16-compiled", "float8-compiled")


def batches(n: int, batch: int, vocab: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator(device="cuda").manual_seed(seed)
    out = []
    for _ in range(n):
        feats = torch.randn(batch, 128, 3000, generator=g, device="cuda")
        labels = torch.randint(0, vocab, (batch, 128), generator=g, device="cuda")
        out.append({"input_features": feats, "labels": labels})
    return out


def to_float8(model: Any) -> int:
    from torchao.float8 import convert_to_float8_training

    converted = []

    def frozen_base(module: torch.nn.Module, fqn: str) -> bool:
        # _scaled_mm needs both matrix dimensions divisible by 16 (all of large-v3's are).
        ok = (
            fqn.endswith("base_layer")
            and isinstance(module, torch.nn.Linear)
            and module.in_features % 16 == 0
            and module.out_features % 16 == 0
        )
        if ok:
            converted.append(fqn)
        return ok

    convert_to_float8_training(model, module_filter_fn=frozen_base)
    return len(converted)


def compile_layers(model: Any) -> int:
    base = model.get_base_model().model
    layers = [*base.encoder.layers, *base.decoder.layers]
    for layer in layers:
        layer.compile()
    return len(layers)


def run_variant(name: str, spec: Any, model_dir: str, data: list[dict[str, Any]]) -> dict[str, Any]:
    from wft_trainer.engines.transformers_engine import load_transformers

    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    loaded = load_transformers(spec, model_dir, checkpointing="off")
    model = loaded.model
    notes = []
    if name.startswith("float8"):
        notes.append(f"{to_float8(model)} base layers in float8")
    if name.endswith("compiled"):
        notes.append(f"{compile_layers(model)} layers compiled")
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, fused=True)
    warmup = 5
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))
    losses, times = [], []
    for step, batch in enumerate(data):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with loaded.autocast():
            out = model(
                input_features=batch["input_features"].to(loaded.feature_dtype),
                labels=batch["labels"],
            )
        out.loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(out.loss.detach()))
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        print(f"{name} step {step + 1} loss {losses[-1]:.4f} {times[-1]:.2f} s", flush=True)
    batch_size = data[0]["labels"].shape[0]
    timed = times[5:]  # the first steps compile; steady state from step 6
    result = {
        "variant": name,
        "notes": notes,
        "samplesPerSecond": round(batch_size * len(timed) / sum(timed), 2),
        "firstStepSeconds": round(times[0], 1),
        "peakGpuGiB": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "lossCurve": [round(x, 4) for x in losses],
    }
    del model, loaded, opt, sched, out
    gc.collect()
    torch.cuda.empty_cache()
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser()
    p.add_argument("--processor", type=Path, default=Path(".gpu_assets/processor"))
    p.add_argument("--work", type=Path, default=None)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--variants", default=",".join(VARIANTS))
    args = p.parse_args(argv)
    from wft_api.v1alpha1 import WhisperFineTuneSpec

    work = args.work or Path(tempfile.mkdtemp(prefix="float8-"))
    model_dir = work / "whisper-large-v3"
    build_large_model(args.processor, model_dir)
    spec = WhisperFineTuneSpec.model_validate(
        trainer_config("transformers", "none", args.batch, args.steps, checkpointing="off")["spec"]
    )
    vocab = json.loads((model_dir / "config.json").read_text())["vocab_size"]
    data = batches(args.steps, args.batch, vocab)
    runs, failed = [], []
    for variant in args.variants.split(","):
        try:
            runs.append(run_variant(variant, spec, str(model_dir), data))
        except Exception as err:  # a variant that cannot run is a finding, not the end of the run
            failed.append({"variant": variant, "error": f"{type(err).__name__}: {err}"[:2000]})
            gc.collect()
            torch.cuda.empty_cache()
    base = next((r for r in runs if r["variant"] == "bf16-compiled"), runs[0])
    for r in runs:
        r["speedVsBf16Compiled"] = round(r["samplesPerSecond"] / base["samplesPerSecond"], 3)
        r["maxLossDiffVsBf16Compiled"] = round(
            max(abs(a - b) for a, b in zip(r["lossCurve"], base["lossCurve"], strict=True)), 4
        )
    report = {
        "gpu": torch.cuda.get_device_name(),
        "batch": args.batch,
        "runs": runs,
        "failed": failed,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return report


if __name__ == "__main__":
    main()
