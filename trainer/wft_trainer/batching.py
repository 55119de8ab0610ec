"""Feeding the model: a deterministic, resumable batch order and the collator.

The order of micro-batches is a pure function of (seed, epoch): epoch e shuffles the training
set with a generator seeded by seed + e. A run is therefore positioned by one number, the count
of micro-batches consumed, which is what a checkpoint stores; a resumed run sees exactly the
batches the uninterrupted run would have seen.

With several ranks (`distributed.Ranks`) the order is that of one process at the global batch
(batch size x ranks): each rank takes its contiguous share of every global batch, so the ranks
together see exactly the batches one process would, and a checkpoint's count still positions
every rank.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from wft_api.v1alpha1 import WHISPER_MAX_LABEL_TOKENS

LABEL_PAD = -100  # ignored by the loss


class ResumableBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Yields index lists for micro-batches start, start+1, ... (across epochs) up to stop:
    this rank's share of each global batch of `batch_size * world` samples."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        start: int,
        stop: int,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start, self.stop = start, stop
        self.rank, self.world = rank, world
        self.global_batch = batch_size * world
        self.per_epoch = math.ceil(n / self.global_batch)

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def order(self, epoch: int) -> list[int]:
        gen = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.n, generator=gen).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        cached_epoch, order = -1, []
        for micro in range(self.start, self.stop):
            epoch, pos = divmod(micro, self.per_epoch)
            if epoch != cached_epoch:
                cached_epoch, order = epoch, self.order(epoch)
            whole = order[pos * self.global_batch : (pos + 1) * self.global_batch]
            yield self.share(whole)

    def share(self, whole: list[int]) -> list[int]:
        """This rank's contiguous part of a global batch, split as evenly as it goes: the
        epoch's short last batch gives some ranks one sample less (or none at all, which the
        training step counts as no tokens)."""
        k = len(whole)
        return whole[self.rank * k // self.world : (self.rank + 1) * k // self.world]


class WhisperCollator:
    """Stacks float16 features and pads labels with -100.

    Labels arrive as Whisper's full prefix (<|startoftranscript|><|lang|><|task|>
    <|notimestamps|>) + text + <|endoftext|>. The model prepends the decoder start token itself
    when it shifts labels right, so a leading start token is stripped here (as Hugging Face's
    speech seq2seq example does), or the decoder would learn to see it twice.
    """

    def __init__(
        self,
        decoder_start_token_id: int,
        max_label_tokens: int = WHISPER_MAX_LABEL_TOKENS,
        bucketed: bool = False,
    ) -> None:
        self.start_id = decoder_start_token_id
        self.max_label_tokens = max_label_tokens
        # On the GPU, at most four label widths (64, 128, 256, 448) instead of one per batch:
        # Unsloth compiles every decoder layer, and each new shape costs a recompilation of
        # seconds, while padding a few tokens more costs the decoder next to nothing.
        self.bucketed = bucketed

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not rows:  # a rank's empty share of a short last batch (ResumableBatchSampler.share)
            return {
                "input_features": torch.empty(0),
                "labels": torch.empty((0, 0), dtype=torch.int64),
            }
        feats = torch.from_numpy(np.stack([np.asarray(r["input_features"]) for r in rows]))
        labels = [np.asarray(r["labels"], dtype=np.int64)[: self.max_label_tokens] for r in rows]
        if all(len(lab) and lab[0] == self.start_id for lab in labels):
            labels = [lab[1:] for lab in labels]
        width = max(len(lab) for lab in labels)
        if self.bucketed:
            width = min(max(MIN_BUCKET, 1 << (width - 1).bit_length()), self.max_label_tokens)
        padded = np.full((len(labels), width), LABEL_PAD, dtype=np.int64)
        for i, lab in enumerate(labels):
            padded[i, : len(lab)] = lab
        return {"input_features": feats, "labels": torch.from_numpy(padded)}


MIN_BUCKET = 64


def as_rows(dataset: Any) -> Any:
    """The training view of a prepared split: only what the model eats, as numpy."""
    return dataset.with_format("numpy", columns=["input_features", "labels"])


def make_loader(
    dataset: Any,
    batches: Iterable[list[int]],  # a ResumableBatchSampler, or a plain list of index lists
    collator: Callable[[Sequence[dict[str, Any]]], Any],
    cuda: bool,
    workers: int | None = None,
    ranks_on_node: int = 1,
) -> torch.utils.data.DataLoader[Any]:
    """Worker processes read the memory-mapped Arrow file and pin the batch, so the GPU never
    waits on the disk; on the CPU the main process does it (no fork overhead for tiny models).
    The ranks of one node (one per GPU) share its CPUs: each gets its part of them."""
    if workers is None:
        cpus = (os.cpu_count() or 2) // max(1, ranks_on_node)
        workers = min(8, max(1, cpus // 2)) if cuda else 0
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=batches,
        collate_fn=collator,
        num_workers=workers,
        pin_memory=cuda,
        prefetch_factor=4 if workers else None,
        persistent_workers=False,
        worker_init_fn=_own_process_group if workers else None,
    )


def _own_process_group(worker_id: int) -> None:
    """A SIGTERM sent to the whole process group (`timeout`, a shell or an init that forwards
    it) must reach only the trainer, which finishes its step and checkpoints: a worker killed
    by it would fail the step first ("DataLoader worker is killed by signal: Terminated"). In
    a group of its own the worker no longer gets group-wide signals, yet still ends the normal
    ways: the loader's shutdown, a direct terminate(), or its watchdog once the trainer is gone.
    (Ignoring SIGTERM instead made the trainer hang at exit: multiprocessing terminates and
    joins the workers of a loader still alive then, and they never went.)"""
    os.setpgid(0, 0)
