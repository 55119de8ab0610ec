"""Randomly initialised Whisper models of any shape, built from a config, with no hub access.

For tests where only shapes matter (a 3.7M-parameter model trains in a fraction of a second a
step on the CPU) and for the GPU benchmarks (large-v3's shapes). The tokenizer and feature
extractor are large-v3's real ones (`models.vocab`: `<|startoftranscript|>` 50258, `<|en|>`
50259, `<|transcribe|>` 50360, `<|notimestamps|>` 50364, vocabulary 51866). Everything is saved
with `save_pretrained`, so the trainer loads it exactly like a downloaded model. Where learning
is what a test is about, the real tiny.en (`wft_local.whisper_packages`) stands in instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wft_api.v1alpha1 import WHISPER_MAX_LABEL_TOKENS
from wft_trainer.models import vocab
from wft_trainer.models.vocab import Vocabulary

# openai/whisper-large-v3's architecture (config.json on the hub).
LARGE_V3: dict[str, Any] = {
    "d_model": 1280,
    "encoder_layers": 32,
    "decoder_layers": 32,
    "encoder_attention_heads": 20,
    "decoder_attention_heads": 20,
    "encoder_ffn_dim": 5120,
    "decoder_ffn_dim": 5120,
    "num_mel_bins": 128,
}
# About 3.7M parameters: ~0.3 s per training step on 2 CPU threads at batch 4.
TINY: dict[str, Any] = {
    "d_model": 64,
    "encoder_layers": 2,
    "decoder_layers": 2,
    "encoder_attention_heads": 2,
    "decoder_attention_heads": 2,
    "encoder_ffn_dim": 256,
    "decoder_ffn_dim": 256,
    "num_mel_bins": 80,
}

# large-v3's vocabulary: 50257 BPE ranks + 1609 special and timestamp tokens.
VOCABULARY = Vocabulary(multilingual=True, num_languages=100)
VOCAB_SIZE = VOCABULARY.size


def build_processor(num_mel_bins: int = 80) -> Any:
    """A WhisperProcessor (feature extractor + large-v3's tokenizer) with no download."""
    return vocab.build_processor(VOCABULARY, num_mel_bins)


def whisper_config(shape: dict[str, Any], **overrides: Any) -> Any:
    """A WhisperConfig with large-v3's vocabulary and special-token ids and the given shape."""
    from transformers import WhisperConfig

    ids = VOCABULARY.ids()
    values = {
        "vocab_size": VOCAB_SIZE,
        "max_source_positions": 1500,
        "max_target_positions": WHISPER_MAX_LABEL_TOKENS,
        "decoder_start_token_id": ids["<|startoftranscript|>"],
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|endoftext|>"],
        "pad_token_id": ids["<|endoftext|>"],
        **shape,
        **overrides,
    }
    return WhisperConfig(**values)


def build_model_dir(
    out_dir: Path | str, shape: dict[str, Any] | None = None, seed: int = 0, **overrides: Any
) -> Path:
    """Save a random-init Whisper of `shape` plus its processor into `out_dir`; return it."""
    import torch
    from transformers import WhisperForConditionalGeneration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = whisper_config(shape or TINY, **overrides)
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config)
    model.generation_config = generation_config()
    model.save_pretrained(out)
    vocab.save_processor(build_processor(config.num_mel_bins), out)
    return out


def build_tiny_model(out_dir: Path | str, num_mel_bins: int = 80, seed: int = 0) -> Path:
    """A ~3.7M-parameter Whisper for CPU tests and the demo."""
    return build_model_dir(out_dir, {**TINY, "num_mel_bins": num_mel_bins}, seed=seed)


def generation_config() -> Any:
    """What generate() needs to know about Whisper's prompt tokens (as the hub's file has)."""
    return vocab.generation_config(VOCABULARY, suppress_tokens=[])
