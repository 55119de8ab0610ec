"""`batchSize: auto`: the probe halves on out-of-memory and keeps the run's randomness.

No GPU runs here, so the model is a stand-in that raises torch's real `OutOfMemoryError` above
a batch size, the way the CUDA allocator does. The GPU suite probes on a real H100 with its
memory capped (tests/gpu, `--gpu-memory-fraction`).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from datasets import Dataset
from wft_api.conditions import Reason
from wft_api.v1alpha1 import TrainingSpec
from wft_trainer.batching import WhisperCollator
from wft_trainer.engines import LoadedModel
from wft_trainer.errors import TrainerFailure
from wft_trainer.loop import optimizer_state_bytes, probe_batch_size


class MemoryWall(torch.nn.Module):
    """A model whose step fails like a full GPU once the batch exceeds `fits`."""

    def __init__(self, fits: int) -> None:
        super().__init__()
        self.fits = fits
        self.weight = torch.nn.Parameter(torch.ones(()))
        self.seen: list[tuple[int, int]] = []  # (batch, label width) of every probe

    def forward(self, input_features: torch.Tensor, labels: torch.Tensor) -> Any:
        self.seen.append((labels.shape[0], labels.shape[1]))
        if labels.shape[0] > self.fits:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return SimpleNamespace(loss=(input_features.float().mean() * self.weight))


def dataset(n: int) -> Dataset:
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 40, size=n)
    return Dataset.from_dict(
        {
            "input_features": [np.zeros((4, 6), dtype=np.float16) for _ in range(n)],
            "labels": [list(range(10, 10 + int(k))) for k in lengths],
        }
    )


def loaded(model: torch.nn.Module) -> LoadedModel:
    return LoadedModel(
        model=model,
        engine="transformers",
        device=torch.device("cpu"),
        feature_dtype=torch.float32,
        quantization="none",
    )


def test_halves_until_a_step_fits_with_the_longest_labels_and_keeps_rng() -> None:
    model = MemoryWall(fits=8)
    ds = dataset(40)
    torch.manual_seed(5)
    expected_next = torch.rand(3)
    torch.manual_seed(5)

    size = probe_batch_size(loaded(model), ds, WhisperCollator(50258), cap=128)

    assert size == 8
    # 40 samples: the first probe is the largest power of two the data holds (32), then halves.
    assert [b for b, _ in model.seen] == [32, 16, 8]
    longest = max(len(x) for x in ds["labels"])
    assert all(width == longest for _, width in model.seen)  # the worst case is probed
    assert torch.equal(torch.rand(3), expected_next)  # probing consumed no randomness
    assert model.weight.grad is None  # no probe gradient leaks into training


def test_nothing_fits_names_the_cause() -> None:
    with pytest.raises(TrainerFailure) as err:
        probe_batch_size(loaded(MemoryWall(fits=0)), dataset(3), WhisperCollator(50258))
    assert err.value.reason == Reason.CUDA_OUT_OF_MEMORY
    assert "batch size 1" in err.value.message


def test_optimizer_state_reserved_by_optimizer() -> None:
    params = [torch.nn.Parameter(torch.zeros(10, 10)), torch.nn.Parameter(torch.zeros(5))]
    adamw = TrainingSpec.model_validate({"optimizer": "adamw_torch"})
    eight_bit = TrainingSpec.model_validate({"optimizer": "adamw_8bit"})
    assert optimizer_state_bytes(adamw, params) == 8 * 105  # two float32 moments
    assert optimizer_state_bytes(eight_bit, params) == 2 * 105
