"""The base model's load begun beside the data stage (engines.Loading, issue 19).

The pipeline starts the transformers engine's load on a thread while the data stage runs and
finishes it (checkpointing from the longest label, compiled layers) once the data is ready.
These check what a user would notice if that went wrong: the same adapter and the same step as
a load made in one go, the checkpointing choice still in force, and a broken base model still
failing with the model's own error, not a thread's traceback.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from wft_api.conditions import Reason
from wft_api.v1alpha1 import WhisperFineTuneSpec
from wft_trainer import engines
from wft_trainer.errors import TrainerFailure


def _spec(checkpointing: str = "off") -> WhisperFineTuneSpec:
    return WhisperFineTuneSpec.model_validate(
        {
            "baseModel": "openai/whisper-tiny",  # loaded from the folder given
            "engine": "transformers",
            "quantization": "none",
            "dataset": {"uri": "s3://unused/"},
            "output": {"uri": "s3://unused/"},
            "training": {"gradientCheckpointing": checkpointing, "seed": 11},
        }
    )


def _step(loaded: engines.LoadedModel) -> tuple[float, list[torch.Tensor]]:
    """One training step's loss and LoRA gradients on a fixed batch."""
    loaded.train_mode()
    config = loaded.model.get_base_model().config
    gen = torch.Generator().manual_seed(0)
    batch = {
        "input_features": torch.randn(
            2, config.num_mel_bins, 2 * config.max_source_positions, generator=gen
        ),
        "labels": torch.randint(0, config.vocab_size, (2, 9), generator=gen),
    }
    loaded.model.zero_grad(set_to_none=True)
    loss = loaded.model(**batch).loss
    loss.backward()
    return float(loss.detach()), [p.grad.clone() for p in loaded.trainable_parameters()]


def _lora(loaded: engines.LoadedModel) -> dict[str, torch.Tensor]:
    return {
        name: p.detach().clone() for name, p in loaded.model.named_parameters() if p.requires_grad
    }


@pytest.mark.parametrize("checkpointing", ["off", "on"])
def test_a_load_begun_on_a_thread_trains_as_one_made_at_once(
    tiny_model_dir: Path, checkpointing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _spec(checkpointing)
    threaded = engines.Loading(spec, str(tiny_model_dir))
    assert threaded._thread is not None  # the first half runs beside the caller
    background = threaded.result(label_tokens=20)
    monkeypatch.setenv("WFT_OVERLAP_LOAD", "0")
    inline = engines.Loading(spec, str(tiny_model_dir))
    assert inline._thread is None
    at_once = inline.result(label_tokens=20)

    assert background.checkpointing.mode == at_once.checkpointing.mode == checkpointing
    inner = background.model.get_base_model()
    assert inner.is_gradient_checkpointing is (checkpointing == "on")
    a, b = _lora(background), _lora(at_once)
    assert a.keys() == b.keys() and len(a) > 0
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same seeded LoRA A matrices
    loss_a, grads_a = _step(background)
    loss_b, grads_b = _step(at_once)
    assert loss_a == loss_b
    assert all(torch.equal(x, y) for x, y in zip(grads_a, grads_b, strict=True))


def test_checkpointing_added_after_lora_computes_what_it_did_before_lora(
    tiny_model_dir: Path,
) -> None:
    """Before the load was split, checkpointing was enabled before peft wrapped the model (and
    peft then hooked the inputs); now it comes after. The step must not change."""
    from peft import get_peft_model
    from transformers import WhisperForConditionalGeneration
    from wft_trainer.engines.transformers_engine import lora_config

    spec = _spec("on")
    model = WhisperForConditionalGeneration.from_pretrained(str(tiny_model_dir))
    model.config.use_cache = False
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    torch.manual_seed(spec.training.seed)
    before = engines.LoadedModel(
        model=get_peft_model(model, lora_config(spec)),
        engine="transformers",
        device=torch.device("cpu"),
        feature_dtype=torch.float32,
        quantization="none",
    )
    now = engines.load(spec, str(tiny_model_dir), label_tokens=20)
    loss_a, grads_a = _step(before)
    loss_b, grads_b = _step(now)
    assert loss_a == loss_b
    assert all(torch.equal(x, y) for x, y in zip(grads_a, grads_b, strict=True))


def test_a_broken_base_model_fails_from_result_naming_the_folder(tmp_path: Path) -> None:
    broken = tmp_path / "whisper-broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    loading = engines.Loading(_spec(), str(broken))
    with pytest.raises(TrainerFailure) as caught:
        loading.result(label_tokens=20)
    assert caught.value.reason == Reason.MODEL_LOAD_FAILED
    assert str(broken.resolve()) in caught.value.message


def test_a_run_that_ends_before_the_model_is_used_waits_for_the_loads_thread(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The data stage failed while the weights were still arriving: the process exits only
    once the load's thread is done (up to a limit), never with CUDA busy in another thread."""
    import threading
    import time

    from wft_trainer.engines import transformers_engine

    done = threading.Event()
    real = transformers_engine.load_base

    def slow(*args: object, **kwargs: object) -> object:
        time.sleep(0.5)
        out = real(*args, **kwargs)  # type: ignore[arg-type]
        done.set()
        return out

    monkeypatch.setattr(transformers_engine, "load_base", slow)
    loading = engines.Loading(_spec(), str(tiny_model_dir))
    loading.abandon(timeout=0.01)  # the limit holds
    assert not done.is_set()
    loading.abandon()
    assert done.is_set() and loading._thread is not None and not loading._thread.is_alive()
