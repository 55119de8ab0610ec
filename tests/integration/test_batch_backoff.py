"""`batchSize: auto` backs off when a training step (not only the probe) runs out of memory.

The model is the tiny Whisper through the transformers engine, checkpoints go to moto's S3
server; the one stand-in is the GPU's memory wall: no GPU runs here, so a forward hook raises
torch's real `OutOfMemoryError` on the second training step at a batch above 2, as an 8-bit base
did on the H100 after its probe step fit (docs/benchmarks.md).
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
import torch
from datasets import Dataset
from wft_api.conditions import Reason
from wft_api.v1alpha1 import TrainingSpec, WhisperFineTuneSpec
from wft_trainer import engines
from wft_trainer.batch_probe import CPU_BATCH_SIZE
from wft_trainer.batching import WhisperCollator
from wft_trainer.checkpoint import CheckpointStore
from wft_trainer.errors import TrainerFailure
from wft_trainer.loop import TrainingRecipe, TrainResult
from wft_trainer.storage import S3Store

pytestmark = pytest.mark.integration

BUCKET = "backoff"


def _spec() -> WhisperFineTuneSpec:
    return WhisperFineTuneSpec.model_validate(
        {
            "baseModel": "openai/whisper-large-v3",  # loaded from the tiny model's folder
            "engine": "transformers",
            "quantization": "none",
            "dataset": {"uri": "s3://unused/"},
            "output": {"uri": "s3://unused/"},
        }
    )


class MemoryWall:
    """Training forwards at a batch above `fits` fail from the `from_forward`-th on."""

    def __init__(self, model: Any, fits: int, from_forward: int) -> None:
        self.fits, self.from_forward, self.forwards = fits, from_forward, 0
        self.batches: list[int] = []
        self.failed_batch: weakref.ref[torch.Tensor] | None = None
        self.failed_batch_alive: list[bool] = []  # at each forward after the failure
        model.get_base_model().register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        if not (module.training and torch.is_grad_enabled()):
            return  # evaluation is not walled
        self.forwards += 1
        features = kwargs["input_features"]
        self.batches.append(features.shape[0])
        if self.failed_batch is not None:
            self.failed_batch_alive.append(self.failed_batch() is not None)
        if features.shape[0] > self.fits and self.forwards >= self.from_forward:
            self.failed_batch = weakref.ref(features)
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 118.00 MiB.")


def _dataset(config: Any, n: int = 16) -> Dataset:
    rng = np.random.default_rng(0)
    frames = 2 * config.max_source_positions
    return Dataset.from_dict(
        {
            "input_features": [
                rng.standard_normal((config.num_mel_bins, frames)).astype(np.float16)
                for _ in range(n)
            ],
            "labels": [
                [int(t) for t in rng.integers(10, 200, size=int(k))]
                for k in rng.integers(4, 12, size=n)
            ],
        }
    )


def _train(
    model_dir: Path,
    tmp_path: Path,
    run: str,
    wall: tuple[int, int] | None = None,
    **training: Any,
) -> tuple[TrainResult, engines.LoadedModel, MemoryWall | None]:
    loaded = engines.load(_spec(), str(model_dir))
    guard = MemoryWall(loaded.model, *wall) if wall else None
    spec = TrainingSpec.model_validate({"maxSteps": 4, "warmupSteps": 0, **training})
    store = CheckpointStore(
        S3Store.from_spec(cache_dir=tmp_path / "cache"),
        f"s3://{BUCKET}/{run}/generation-1/",
        tmp_path / run,
    )
    config = loaded.model.get_base_model().config
    result = TrainingRecipe(
        loaded, _dataset(config), spec, WhisperCollator(config.decoder_start_token_id), store
    ).train()
    return result, loaded, guard


@pytest.fixture
def bucket(aws_env: str) -> str:
    s3 = boto3.client("s3")
    if BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=BUCKET)
    return BUCKET


def test_auto_starts_over_at_half_the_batch_as_if_the_probe_chose_it(
    bucket: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    assert CPU_BATCH_SIZE == 4  # what auto picks on the CPU, then the wall halves it to 2
    backed_off, loaded, wall = _train(
        tiny_model_dir, tmp_path, "auto", wall=(2, 2), batchSize="auto"
    )
    chosen, _, _ = _train(tiny_model_dir, tmp_path, "two", batchSize=2)

    assert wall is not None and wall.batches[:3] == [4, 4, 2]  # step 2 at 4 failed, then 2
    # On a GPU a failed attempt's batch (and activations) kept alive would fill the memory
    # the smaller batch needs.
    assert wall.failed_batch_alive[0] is False
    assert backed_off.batch_size == 2 and backed_off.steps == 4
    # The same adapter start, seed and data order as a run that asked for 2 from the outset.
    assert [s for s, _ in backed_off.loss_curve] == [1, 2, 3, 4]
    for (_, a), (_, b) in zip(backed_off.loss_curve, chosen.loss_curve, strict=True):
        assert a == pytest.approx(b, rel=1e-5)
    assert any("ran out of CUDA memory at training step 2; trained at 2" in n for n in loaded.notes)


def test_after_a_checkpoint_the_batch_size_is_fixed_and_the_error_says_what_to_do(
    bucket: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(TrainerFailure) as err:
        _train(
            tiny_model_dir,
            tmp_path,
            "late",
            wall=(2, 3),
            batchSize="auto",
            checkpointSteps=2,  # a checkpoint at step 2 records batch size 4; step 3 fails
        )
    assert err.value.reason == Reason.CUDA_OUT_OF_MEMORY
    assert "at batch size 4 during training step 3" in err.value.message
    assert "spec.training.batchSize to a number below 4" in err.value.message


def test_a_fixed_batch_size_is_not_changed_behind_the_users_back(
    bucket: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(TrainerFailure) as err:
        _train(tiny_model_dir, tmp_path, "fixed", wall=(2, 2), batchSize=4)
    assert "at batch size 4 during training step 2" in err.value.message
    assert "set spec.training.batchSize lower (or 'auto')" in err.value.message
