"""Regional compilation of the encoder (what the Unsloth engine adds on the GPU).

Unsloth itself only runs on a GPU; here the same helper runs on the transformers engine's
PEFT-wrapped tiny Whisper on the CPU. The figures (3.7% faster, less peak memory on the H100)
are in docs/benchmarks.md; this checks that every encoder layer is compiled, that the model
computes the same loss and gradients, and that evaluation without gradients still works.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch._dynamo.utils import counters
from wft_api.v1alpha1 import WhisperFineTuneSpec
from wft_trainer import engines
from wft_trainer.evaluate import adapter_adds_nothing, eager_evaluation, evaluate


def _spec() -> WhisperFineTuneSpec:
    return WhisperFineTuneSpec.model_validate(
        {
            "baseModel": "openai/whisper-large-v3",  # loaded from model_dir
            "engine": "transformers",
            "quantization": "none",
            "dataset": {"uri": "s3://unused/"},
            "output": {"uri": "s3://unused/"},
        }
    )


def _loss_and_grads(loaded: engines.LoadedModel, batch: dict) -> tuple[float, list[torch.Tensor]]:
    loaded.model.zero_grad(set_to_none=True)
    loss = loaded.model(**batch).loss
    loss.backward()
    grads = [p.grad.clone() for p in loaded.trainable_parameters() if p.grad is not None]
    return float(loss.detach()), grads


def _eager_model_and_batch(
    model_dir: Path, seed: int
) -> tuple[engines.LoadedModel, dict[str, torch.Tensor]]:
    """A fresh (uncompiled) model in training mode and a random batch of two 30 s clips."""
    torch._dynamo.reset()
    loaded = engines.load(_spec(), str(model_dir))
    loaded.train_mode()
    loaded.model.base_model.model.config.use_cache = False
    gen = torch.Generator().manual_seed(seed)
    config = loaded.model.get_base_model().config
    frames = 2 * config.max_source_positions
    batch = {
        "input_features": torch.randn(2, config.num_mel_bins, frames, generator=gen),
        "labels": torch.randint(0, config.vocab_size, (2, 12), generator=gen),
    }
    return loaded, batch


def test_compiled_encoder_layers_compute_the_same_step(tiny_model_dir: Path) -> None:
    loaded, batch = _eager_model_and_batch(tiny_model_dir, seed=0)
    eager_loss, eager_grads = _loss_and_grads(loaded, batch)

    layers = loaded.model.get_base_model().model.encoder.layers
    # aot_eager traces forward and backward as inductor does, without generating C++/Triton
    # code (the CPU tier has no compiler guarantee; the GPU suite runs inductor for real).
    assert engines.compile_encoder_layers(loaded.model, backend="aot_eager") == len(layers)
    assert all(layer._compiled_call_impl is not None for layer in layers)

    compiled_loss, compiled_grads = _loss_and_grads(loaded, batch)
    assert compiled_loss == pytest.approx(eager_loss, rel=1e-5)
    assert len(compiled_grads) == len(eager_grads) > 0
    for a, b in zip(compiled_grads, eager_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)

    # Evaluation (no gradients, eval mode, a different batch size) still runs and decodes.
    loaded.eval_mode()
    with torch.no_grad():
        tokens = loaded.model.generate(input_features=batch["input_features"][:1], max_new_tokens=4)
    assert tokens.shape[0] == 1


def test_every_layer_compiled_computes_the_same_step_and_still_generates(
    tiny_model_dir: Path,
) -> None:
    """What the transformers engine does on CUDA: the decoder's layers compiled too, including
    generation's cached decoding (a new input shape at every token)."""
    loaded, batch = _eager_model_and_batch(tiny_model_dir, seed=1)
    eager_loss, eager_grads = _loss_and_grads(loaded, batch)
    base = loaded.model.get_base_model().model
    count = engines.compile_layers(loaded.model, ("encoder", "decoder"), backend="aot_eager")
    assert count == len(base.encoder.layers) + len(base.decoder.layers)
    assert all(layer._compiled_call_impl is not None for layer in base.decoder.layers)

    compiled_loss, compiled_grads = _loss_and_grads(loaded, batch)
    assert compiled_loss == pytest.approx(eager_loss, rel=1e-5)
    for a, b in zip(compiled_grads, eager_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)

    # Evaluation runs the compiled layers eagerly: no graph is compiled for it (on the GPU,
    # cached decoding recompiled every decoder layer up to dynamo's limit).
    loaded.eval_mode()
    graphs = counters["stats"]["unique_graphs"]
    with torch.no_grad(), eager_evaluation():
        tokens = loaded.model.generate(input_features=batch["input_features"][:1], max_new_tokens=6)
    assert tokens.shape[0] == 1
    assert counters["stats"]["unique_graphs"] == graphs
    with torch.no_grad():  # and outside it, the compiled layers still generate
        compiled = loaded.model.generate(
            input_features=batch["input_features"][:1], max_new_tokens=6
        )
    assert counters["stats"]["unique_graphs"] > graphs
    assert torch.equal(compiled, tokens)


def test_a_stack_is_left_eager_when_its_variable_says_0(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WFT_COMPILE_DECODER", "0")
    monkeypatch.delenv("WFT_COMPILE_ENCODER", raising=False)
    assert engines.compile_wanted("encoder") and not engines.compile_wanted("decoder")


def test_the_baseline_leaves_out_an_adapter_that_adds_nothing(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """peft's B matrices start at zero, so before training the adapter adds exactly nothing:
    the baseline evaluation runs without it (faster eager decoding on the GPU) and must give
    the same numbers, bit for bit, as with it; once B has moved, the adapter stays in."""
    import datasets
    from transformers import WhisperProcessor

    loaded, batch = _eager_model_and_batch(tiny_model_dir, seed=2)
    loaded.eval_mode()
    assert adapter_adds_nothing(loaded)
    with torch.no_grad():
        with_adapter = loaded.model(**batch).logits
        with loaded.model.disable_adapter():
            without = loaded.model(**batch).logits
    assert torch.equal(with_adapter, without)

    processor = WhisperProcessor.from_pretrained(str(tiny_model_dir))
    texts = ["the patient reports chest pain", "blood pressure one hundred forty"]
    prompt = processor.tokenizer.encode("")
    split = datasets.Dataset.from_dict(
        {
            "input_features": batch["input_features"].numpy().astype("float16"),
            "labels": [
                prompt + processor.tokenizer.encode(t, add_special_tokens=False) for t in texts
            ],
            "text": texts,
            "audio": ["a.wav", "b.wav"],
        }
    )

    def run() -> dict:
        result = evaluate(loaded, split, processor, "en", "transcribe", batch_size=2)
        return {"wer": result.wer, "loss": result.eval_loss, "examples": result.examples}

    base_only = run()
    monkeypatch.setattr("wft_trainer.evaluate.adapter_adds_nothing", lambda loaded: False)
    assert run() == base_only  # with the adapter's layers: the same, to the last bit
    monkeypatch.undo()

    lora_b = next(p for name, p in loaded.model.named_parameters() if "lora_B" in name)
    with torch.no_grad():
        lora_b[0, 0] = 1e-3
    assert not adapter_adds_nothing(loaded)
