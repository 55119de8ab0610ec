"""`batchSize: auto`: the probe halves on out-of-memory and keeps the run's randomness.

No GPU runs here, so the model is a stand-in that raises torch's real `OutOfMemoryError` above
a batch size, the way the CUDA allocator does. On a real H100 with its memory capped, see
`benchmarks/train_gpu.py --batch auto --gpu-memory-fraction` (docs/benchmarks.md).
"""

from __future__ import annotations

import weakref
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from datasets import Dataset
from wft_api.conditions import Reason
from wft_api.v1alpha1 import TrainingSpec
from wft_trainer.batch_probe import optimizer_state_bytes, probe_batch_size
from wft_trainer.batching import WhisperCollator
from wft_trainer.engines import LoadedModel
from wft_trainer.errors import TrainerFailure


def out_of_memory() -> torch.cuda.OutOfMemoryError:
    return torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


class _FailingBackward(torch.autograd.Function):
    """Saves its input for backward (an activation) and runs out of memory in backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        raise out_of_memory()


class MemoryWall(torch.nn.Module):
    """A model whose step fails like a full GPU once the batch exceeds `fits`: in the forward
    pass, or (`in_backward`) only in the backward pass, after the activations were saved."""

    def __init__(self, fits: int, in_backward: bool = False) -> None:
        super().__init__()
        self.fits, self.in_backward = fits, in_backward
        self.weight = torch.nn.Parameter(torch.ones(()))
        self.seen: list[tuple[int, int]] = []  # (batch, label width) of every probe
        self.activations: list[weakref.ref[torch.Tensor]] = []
        self.leaked: list[int] = []  # earlier probes' activations still alive at each probe

    def forward(self, input_features: torch.Tensor, labels: torch.Tensor) -> Any:
        self.seen.append((labels.shape[0], labels.shape[1]))
        self.leaked.append(sum(ref() is not None for ref in self.activations))
        too_big = labels.shape[0] > self.fits
        if too_big and not self.in_backward:
            raise out_of_memory()
        activation = input_features.float() * self.weight
        self.activations.append(weakref.ref(activation))
        if too_big:
            activation = _FailingBackward.apply(activation)
        return SimpleNamespace(loss=activation.mean())


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


def test_a_backward_out_of_memory_frees_its_activations_before_the_next_probe() -> None:
    model = MemoryWall(fits=4, in_backward=True)

    assert probe_batch_size(loaded(model), dataset(20), WhisperCollator(50258)) == 4

    assert [b for b, _ in model.seen] == [16, 8, 4]
    assert model.leaked == [0, 0, 0]  # on a GPU a leak would make every smaller probe fail too


def test_a_probe_that_fits_without_headroom_halves_once_more() -> None:
    # The GPU's memory reading is the one stand-in here: 6 units per sample of a 100-unit GPU.
    model = MemoryWall(fits=16)

    def measure(device: torch.device) -> tuple[int, int]:
        return 6 * model.seen[-1][0], 100

    size = probe_batch_size(loaded(model), dataset(20), WhisperCollator(50258), measure=measure)

    assert size == 8  # 16 fits but peaks at 96% of the GPU; 8 peaks at 48%
    assert [b for b, _ in model.seen] == [16, 8]
    assert model.weight.grad is None


def test_one_sample_is_taken_even_without_headroom() -> None:
    model = MemoryWall(fits=1)
    size = probe_batch_size(
        loaded(model), dataset(4), WhisperCollator(50258), measure=lambda device: (99, 100)
    )
    assert size == 1  # training may still fit; the out-of-memory error says what to do if not


def test_nothing_fits_names_the_cause() -> None:
    with pytest.raises(TrainerFailure) as err:
        probe_batch_size(loaded(MemoryWall(fits=0)), dataset(3), WhisperCollator(50258))
    assert err.value.reason == Reason.CUDA_OUT_OF_MEMORY
    assert "batch size 1" in err.value.message and "not even one sample" in err.value.message


def test_optimizer_state_reserved_by_optimizer() -> None:
    params = [torch.nn.Parameter(torch.zeros(10, 10)), torch.nn.Parameter(torch.zeros(5))]
    adamw = TrainingSpec.model_validate({"optimizer": "adamw_torch"})
    eight_bit = TrainingSpec.model_validate({"optimizer": "adamw_8bit"})
    assert optimizer_state_bytes(adamw, params) == 8 * 105  # two float32 moments
    assert optimizer_state_bytes(eight_bit, params) == 2 * 105
