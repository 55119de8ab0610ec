"""Whisper models and processors built offline, from a config, with no hub access.

No weights can be downloaded on these machines, so tests, the demo and the GPU benchmarks build
what they need here: the real Whisper tokenizer (from openai-whisper's bundled
`multilingual.tiktoken`, with special tokens in openai-whisper's order so that ids match
large-v3: `<|startoftranscript|>` 50258, `<|en|>` 50259, `<|transcribe|>` 50360,
`<|notimestamps|>` 50364, vocabulary 51866), the real feature extractor, and a randomly
initialised `WhisperForConditionalGeneration` of any shape (tiny for CPU tests, large-v3 for the
GPU). Everything is saved with `save_pretrained`, so the trainer loads it exactly like a
downloaded model (`from_pretrained(path, local_files_only=True)`).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from wft_api.languages import LANGUAGES

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

VOCAB_SIZE = 51866  # large-v3: 50257 BPE ranks + 1609 special and timestamp tokens
NUM_TIMESTAMPS = 1501


def _whisper_assets() -> Path:
    import whisper  # openai-whisper: only its bundled assets are used

    return Path(whisper.__file__).parent


def special_tokens() -> list[str]:
    """openai-whisper's special tokens, in its order (whisper/tokenizer.py, get_encoding)."""
    return [
        "<|endoftext|>",
        "<|startoftranscript|>",
        *[f"<|{code}|>" for code in LANGUAGES],
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nospeech|>",
        "<|notimestamps|>",
    ]


def build_tokenizer() -> Any:
    """The multilingual Whisper tokenizer (large-v3 ids), from openai-whisper's tiktoken file."""
    from tokenizers import AddedToken
    from transformers import WhisperTokenizer
    from transformers.convert_slow_tokenizer import TikTokenConverter

    vocab_file = _whisper_assets() / "assets" / "multilingual.tiktoken"
    vocab, merges = TikTokenConverter(vocab_file=str(vocab_file)).extract_vocab_merges_from_model(
        str(vocab_file)
    )
    tokenizer = WhisperTokenizer(vocab=vocab, merges=merges)
    specials = special_tokens()
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in specials[1:]])
    # Timestamps are ordinary (non-special) added tokens in Whisper, so decode keeps them unless
    # asked otherwise; they come last, ending at id 51865.
    tokenizer.add_tokens(
        [AddedToken(f"<|{i * 0.02:.2f}|>", normalized=False) for i in range(NUM_TIMESTAMPS)]
    )
    tokenizer.add_special_tokens({"additional_special_tokens": specials[1:]})
    return tokenizer


def build_processor(num_mel_bins: int = 80) -> Any:
    """A WhisperProcessor (feature extractor + tokenizer) with no download."""
    from transformers import WhisperFeatureExtractor, WhisperProcessor

    extractor = WhisperFeatureExtractor(feature_size=num_mel_bins)
    return WhisperProcessor(feature_extractor=extractor, tokenizer=build_tokenizer())


def whisper_config(shape: dict[str, Any], **overrides: Any) -> Any:
    """A WhisperConfig with large-v3's vocabulary and special-token ids and the given shape."""
    from transformers import WhisperConfig

    values = {
        "vocab_size": VOCAB_SIZE,
        "max_source_positions": 1500,
        "max_target_positions": 448,
        "decoder_start_token_id": 50258,
        "bos_token_id": 50257,
        "eos_token_id": 50257,
        "pad_token_id": 50256,
        **shape,
        **overrides,
    }
    return WhisperConfig(**values)


def build_model_dir(
    out_dir: Path | str, shape: dict[str, Any] | None = None, seed: int = 0, **overrides: Any
) -> Path:
    """Save a random-init Whisper of `shape` plus its processor into `out_dir`; return it."""
    import torch
    from transformers import GenerationConfig, WhisperForConditionalGeneration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = whisper_config(shape or TINY, **overrides)
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config)
    model.generation_config = _generation_config(GenerationConfig)
    model.save_pretrained(out)
    processor = build_processor(config.num_mel_bins)
    processor.save_pretrained(out)
    # transformers 5 does not write normalizer.json; Whisper's English normalizer needs it.
    shutil.copy(_whisper_assets() / "normalizers" / "english.json", out / "normalizer.json")
    return out


def build_tiny_model(out_dir: Path | str, num_mel_bins: int = 80, seed: int = 0) -> Path:
    """A ~3.7M-parameter Whisper for CPU tests and the demo."""
    return build_model_dir(out_dir, {**TINY, "num_mel_bins": num_mel_bins}, seed=seed)


def _generation_config(cls: Any) -> Any:
    """What generate() needs to know about Whisper's prompt tokens (as the hub's file has)."""
    lang_ids = {f"<|{code}|>": 50259 + i for i, code in enumerate(LANGUAGES)}
    return cls(
        decoder_start_token_id=50258,
        bos_token_id=50257,
        eos_token_id=50257,
        pad_token_id=50257,
        max_length=448,
        lang_to_id=lang_ids,
        task_to_id={"translate": 50359, "transcribe": 50360},
        no_timestamps_token_id=50364,
        prev_sot_token_id=50362,
        is_multilingual=True,
        begin_suppress_tokens=[220, 50257],
        suppress_tokens=[],
    )
