"""How the engines spend GPU memory: gradient checkpointing and its offload, chosen from what is
free, and which engine `auto` means for a model of a given size.

Checkpointing trades speed for memory: it keeps only each layer's input and recomputes the rest
in the backward pass, and Unsloth's variant also moves those inputs to host RAM. On the H200
the same large-v3 step (batch 32) ran at 38.97 samples/s with no checkpointing (80.7 GiB peak),
26.47 with checkpointing (8.6 GiB) and 26.2 with offload (5.25 GiB), with identical loss curves
(issue 19, docs/benchmarks.md). A fixed choice either wastes a large GPU or fails a small one,
so `training.gradientCheckpointing: auto` picks the fastest that fits, from an estimate made
before the model is loaded (Unsloth takes the choice at load time). The batch-size probe and
the out-of-memory back-off still stand behind the estimate.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..results import GradientCheckpointing

GIB = 2**30
FRAMES = 1500  # encoder positions of a 30 s window, the same for every Whisper size
# Bytes of saved activations per (layer x position x d_model) in one training step without
# checkpointing: LoRA r=32 on q,k,v,out,fc1,fc2 in bf16 autocast, calibrated on whisper-large-v3
# at batch 32 on the H200 (2.47 GiB a sample measured; this gives 2.67, on the safe side).
ACTIVATION_BYTES = 43
# With checkpointing a sample keeps about an eighth of that (layer inputs plus one layer's
# recompute): transformers measured 0.30 GiB a sample on large-v3 (batches 32 and 128).
CHECKPOINTED_SHARE = 0.125
# Of the memory free before loading, what the policy plans to use for weights, optimizer and
# activations; the rest covers the allocator's fragmentation, evaluation and compiled kernels.
USABLE_SHARE = 0.8
# Batch size `auto` turns checkpointing off only if at least this many samples fit without it;
# below that, a larger checkpointed batch is faster (the GPU is mostly idle at batch 4).
MIN_UNCHECKPOINTED_BATCH = 16
WEIGHT_BYTES = {"4bit": 0.6, "8bit": 1.1, "none": 2.0}  # per parameter, with quantization state
# engine auto: the transformers engine (16-bit base) was the faster one on whisper-base (74M,
# d_model 512) on the H200, 98.3 against 79.8 samples/s for Unsloth 4-bit, and Unsloth on
# large-v3 (d_model 1280), 1.43x; below this width auto means transformers. small (768) and
# medium (1024) were not measured: the line sits between base and large, at medium.
UNSLOTH_MIN_D_MODEL = 1024
# Since every layer is compiled (run 22), the transformers engine's 16-bit base is the faster one
# on large-v3 too: 42.2 against Unsloth 4-bit's 34.5 samples/s at batch 32, both without
# checkpointing (92 against 81 GiB peak), H200, run 23. On GPUs of that class (80 GB and up:
# A100 80GB, H100, H200; they report a little under 80 GiB) auto means transformers for every
# width. Below, the width rule stays: Unsloth's 4-bit base leaves more room for an
# uncheckpointed batch, and the compiled engine was not measured against it on a small GPU.
LARGE_GPU_BYTES = 70 * 2**30
# Widths of the published sizes, for ids and folder names that say which one they are.
SIZE_D_MODEL = {"tiny": 384, "base": 512, "small": 768, "medium": 1024, "large": 1280}
_SIZE_IN_NAME = re.compile(r"whisper[-_](tiny|base|small|medium|large|turbo)", re.IGNORECASE)


@dataclass(frozen=True)
class Shape:
    """The dimensions that decide a training step's memory."""

    d_model: int
    encoder_layers: int
    decoder_layers: int
    vocab_size: int = 51866

    @property
    def parameters(self) -> int:
        # Per layer: attention 4 d^2, feed-forward 8 d^2; the decoder adds cross-attention.
        d = self.d_model
        return (
            12 * d * d * self.encoder_layers
            + 16 * d * d * self.decoder_layers
            + (self.vocab_size * d)
        )

    def activation_bytes(self, label_tokens: int) -> int:
        """Saved activations of one sample in one step without checkpointing."""
        positions = self.encoder_layers * FRAMES + self.decoder_layers * label_tokens
        return ACTIVATION_BYTES * self.d_model * positions


def read_shape(model_dir: str | Path) -> Shape | None:
    """The shape from a transformers Whisper config.json, None if the folder has none."""
    path = Path(model_dir) / "config.json"
    try:
        config: dict[str, Any] = json.loads(path.read_text())
        return Shape(
            d_model=int(config["d_model"]),
            encoder_layers=int(config["encoder_layers"]),
            decoder_layers=int(config["decoder_layers"]),
            vocab_size=int(config.get("vocab_size", 51866)),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class Checkpointing:
    """The policy in force: off, on (recompute) or offload (recompute, inputs in host RAM)."""

    mode: str
    reason: str

    def as_metrics(self) -> GradientCheckpointing:
        return GradientCheckpointing(mode=self.mode, reason=self.reason)


def choose_checkpointing(
    requested: str,
    engine: str,
    shape: Shape | None,
    quantization: str,
    batch_size: int | str,
    label_tokens: int,
    free_bytes: int | None,
) -> Checkpointing:
    """The checkpointing mode for this run; `free_bytes` is the GPU's free memory (None: CPU).

    An explicit request is kept, except offload on the transformers engine (which has none).
    """
    if requested != "auto":
        if requested == "offload" and engine != "unsloth":
            return Checkpointing("on", "offload is Unsloth's; the transformers engine recomputes")
        return Checkpointing(requested, "spec.training.gradientCheckpointing")
    if free_bytes is None:
        return Checkpointing("off", "on the CPU: activations live in host memory")
    if shape is None:
        fallback = "offload" if engine == "unsloth" else "on"
        return Checkpointing(fallback, "the base model's shape is unknown: the safe choice")
    weights = shape.parameters * WEIGHT_BYTES.get(quantization, 2.0)
    budget = USABLE_SHARE * free_bytes - weights
    per_sample = shape.activation_bytes(label_tokens)
    batch = batch_size if isinstance(batch_size, int) else MIN_UNCHECKPOINTED_BATCH
    need_off = batch * per_sample
    facts = (
        f"{batch} samples need about {need_off / GIB:.1f} GiB of activations without "
        f"checkpointing; {max(budget, 0) / GIB:.1f} GiB of {free_bytes / GIB:.1f} GiB free "
        "are usable"
    )
    if need_off <= budget:
        return Checkpointing("off", facts)
    if need_off * CHECKPOINTED_SHARE <= budget or engine != "unsloth":
        return Checkpointing("on", facts)
    return Checkpointing("offload", facts)


def shape_hint(base_model: str) -> Shape | None:
    """The shape of a base model before it is fetched: its config.json when it is a local
    folder, else the size its name says (openai/whisper-base, s3://.../whisper-small.en/)."""
    local = Path(base_model)
    if not base_model.startswith("s3://") and local.is_dir():
        shape = read_shape(local)
        if shape is not None:
            return shape
    match = _SIZE_IN_NAME.search(base_model)
    if match is None:
        return None
    size = match.group(1).lower()
    d_model = SIZE_D_MODEL.get(size, 1280)  # turbo is large-v3's encoder
    layers = {384: 4, 512: 6, 768: 12, 1024: 24, 1280: 32}[d_model]
    return Shape(d_model, layers, 4 if size == "turbo" else layers)


def auto_engine(
    base_model: str, cuda: bool, gpu_memory_bytes: int | None = None
) -> tuple[str, str]:
    """What `engine: auto` means for this base model on a GPU with `gpu_memory_bytes` in all;
    returns (engine, why)."""
    if not cuda:
        return "transformers", "no CUDA GPU: transformers"
    if gpu_memory_bytes is not None and gpu_memory_bytes >= LARGE_GPU_BYTES:
        return "transformers", (
            f"on a GPU of {gpu_memory_bytes / 2**30:.0f} GiB the transformers engine with a "
            "16-bit base and compiled layers trains faster than Unsloth at 4 bits (measured on "
            "whisper-base and large-v3, H200)"
        )
    shape = shape_hint(base_model)
    if shape is not None and shape.d_model < UNSLOTH_MIN_D_MODEL:
        return "transformers", (
            f"a model of width {shape.d_model} trains faster on transformers with a 16-bit "
            "base than on Unsloth at 4 bits (measured on whisper-base, H200)"
        )
    return "unsloth", "Unsloth on a CUDA GPU"
