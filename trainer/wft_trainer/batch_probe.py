"""`batchSize: auto`: the largest batch whose real training step fits the GPU.

On the CPU there is no memory wall to probe and auto means CPU_BATCH_SIZE. On a GPU the probe
runs real steps top-down from the largest power of two; a step that fits the probe but not
training is caught later by the training loop's back-off (`loop.TrainingRecipe.train`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import torch
from wft_api.conditions import Reason
from wft_api.v1alpha1 import TrainingSpec

from .batching import WhisperCollator, as_rows
from .checkpoint import restore_rng, rng_state
from .engines import LoadedModel
from .errors import TrainerFailure

log = logging.getLogger(__name__)

CPU_BATCH_SIZE = 4  # batchSize auto on the CPU: probing makes no sense without a memory wall
# A probe step that peaks above this share of the GPU's memory does not count as fitting: the
# steps after it need a little more (the optimizer's first update, a fragmented cache). Larger
# surprises are caught by the training loop's back-off: an 8-bit base on the H100 peaked at 67% in its
# probe step and still ran out of memory at training step 2.
PROBE_HEADROOM = 0.9


def choose_batch_size(
    training: TrainingSpec, loaded: LoadedModel, train_ds: Any, collator: WhisperCollator
) -> int:
    if training.batch_size != "auto":
        return int(training.batch_size)
    if loaded.device.type != "cuda":
        return CPU_BATCH_SIZE
    reserve = optimizer_state_bytes(training, loaded.trainable_parameters())
    return probe_batch_size(loaded, train_ds, collator, reserve_bytes=reserve)


def optimizer_state_bytes(training: TrainingSpec, params: list[torch.nn.Parameter]) -> int:
    """What the optimizer will hold on the GPU once training runs (the probe runs without it)."""
    per_value = {"adamw_torch": 8, "adamw_8bit": 2, "sgd": 4, "adafactor": 4}[training.optimizer]
    return per_value * sum(p.numel() for p in params)


def cuda_peak_and_budget(device: torch.device) -> tuple[int, int] | None:
    """(peak bytes allocated since the last reset, bytes this process may hold) on a GPU: the
    device's memory times the per-process fraction, less what other processes hold."""
    if device.type != "cuda":
        return None
    peak = torch.cuda.max_memory_allocated(device)
    total = torch.cuda.get_device_properties(device).total_memory
    budget = int(total * torch.cuda.get_per_process_memory_fraction(device))
    free, _ = torch.cuda.mem_get_info(device)
    return peak, min(budget, torch.cuda.memory_reserved(device) + free)


def probe_batch_size(
    loaded: LoadedModel,
    train_ds: Any,
    collator: WhisperCollator,
    cap: int = 128,
    reserve_bytes: int = 0,
    measure: Callable[[torch.device], tuple[int, int] | None] = cuda_peak_and_budget,
) -> int:
    """The largest power of two (<= cap, <= the data) whose real training step fits the GPU
    with PROBE_HEADROOM to spare.

    Probed top-down with the longest labels of the set, so one fitting probe usually ends it;
    RNG state is kept, so probing does not change the run's randomness. `reserve_bytes` stay
    allocated while probing: the optimizer state that training adds on top of a step.
    """
    rows = as_rows(train_ds)
    lengths = [len(x) for x in train_ds["labels"]]
    longest = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    size = 1 << int(math.log2(max(1, min(cap, len(lengths)))))
    saved = rng_state()
    reserve = (
        torch.empty(reserve_bytes, dtype=torch.uint8, device=loaded.device)
        if reserve_bytes and loaded.device.type == "cuda"
        else None
    )
    try:
        while size >= 1:
            idx = [longest[i % len(longest)] for i in range(size)]
            loss = None
            try:
                if loaded.device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(loaded.device)
                loss = loaded.loss(collator([rows[i] for i in idx]))
                loss.backward()
                if loaded.device.type == "cuda":
                    torch.cuda.synchronize()  # an out-of-memory error surfaces here at the latest
                usage = measure(loaded.device)
                if usage is None:
                    log.info("batch size probe: %d fits", size)
                    return size
                peak, budget = usage
                gib = (peak / 2**30, budget / 2**30)
                if peak <= PROBE_HEADROOM * budget or size == 1:
                    log.info("batch size probe: %d fits (peak %.1f of %.1f GiB)", size, *gib)
                    return size
                log.info(
                    "batch size probe: %d fits but peaks at %.1f of %.1f GiB, more than %d%%; "
                    "halving to leave room for the steps after it",
                    size,
                    *gib,
                    round(PROBE_HEADROOM * 100),
                )
                size //= 2
            except torch.cuda.OutOfMemoryError:
                log.info("batch size probe: %d is out of memory, halving", size)
                size //= 2
            finally:
                # A backward that ran out of memory leaves the forward's graph (every saved
                # activation) hanging on `loss`: drop it, or the next, smaller probe fails too.
                del loss
                loaded.model.zero_grad(set_to_none=True)
                if loaded.device.type == "cuda":
                    torch.cuda.empty_cache()  # give the failed probe's blocks back
    finally:
        del reserve
        restore_rng(saved)
    raise TrainerFailure(
        Reason.CUDA_OUT_OF_MEMORY,
        "CUDA out of memory at batch size 1 during the batch size probe: not even one sample "
        "fits; use quantization '4bit', fewer LoRA targets or a GPU with more memory",
    )
