"""Whisper's vocabularies, processors and generation configs, built offline from openai-whisper.

Every released Whisper uses one of three vocabularies, told apart by their size alone (as
openai-whisper's `ModelDimensions` does): English-only (`*.en`, GPT-2's BPE, 51864 tokens),
multilingual with 99 languages (tiny through large-v2, 51865) and with 100 (large-v3 and turbo,
51866, `<|yue|>` added). The BPE ranks ship with openai-whisper (`assets/*.tiktoken`), so the
tokenizer, the feature extractor and the generation config of any of them can be made here with
no hub: that is what lets `wft prepare` and the data stage run offline for `openai/whisper-*` ids
and what a faster-whisper folder (which carries no timestamps and no generation config) needs.

The tokenizer is built from the tiktoken ranks rather than from a folder's `tokenizer.json`:
the multilingual `tokenizer.json` on the hub merges a few pieces differently from tiktoken
(" the" becomes two tokens), and the models were trained on tiktoken's ids.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from wft_api.languages import LANGUAGES
from wft_api.v1alpha1 import WHISPER_MAX_LABEL_TOKENS

NUM_TIMESTAMPS = 1501  # <|0.00|> ... <|30.00|>
N_FRAMES = 3000  # 30 s of 10 ms mel frames: the encoder's input length


@dataclass(frozen=True)
class Vocabulary:
    """Which of Whisper's vocabularies a model uses, and the ids of its special tokens."""

    multilingual: bool
    num_languages: int  # 99 or 100 for multilingual models; 99 (unused) for English-only

    @classmethod
    def of_size(cls, n_vocab: int) -> Vocabulary:
        """openai-whisper's rule: multilingual from 51865 tokens on, one more language per id."""
        known = {51864: cls(False, 99), 51865: cls(True, 99), 51866: cls(True, 100)}
        if n_vocab not in known:
            raise ValueError(
                f"a vocabulary of {n_vocab} tokens is not one of Whisper's (51864 for English-only "
                "models, 51865 for tiny through large-v2, 51866 for large-v3 and turbo)"
            )
        return known[n_vocab]

    @property
    def encoding(self) -> str:
        return "multilingual" if self.multilingual else "gpt2"

    @property
    def bpe_size(self) -> int:
        """Ordinary tokens; <|endoftext|> comes right after them."""
        return 50257 if self.multilingual else 50256

    @property
    def languages(self) -> list[str]:
        return list(LANGUAGES)[: self.num_languages]  # large-v3 order: yue, the 100th, last

    def special_tokens(self) -> list[str]:
        """openai-whisper's special tokens in its order (whisper/tokenizer.py, get_encoding)."""
        return [
            "<|endoftext|>",
            "<|startoftranscript|>",
            *[f"<|{code}|>" for code in self.languages],
            "<|translate|>",
            "<|transcribe|>",
            "<|startoflm|>",
            "<|startofprev|>",
            "<|nospeech|>",
            "<|notimestamps|>",
        ]

    def ids(self) -> dict[str, int]:
        """Special token -> id (timestamps excluded)."""
        return {tok: self.bpe_size + i for i, tok in enumerate(self.special_tokens())}

    @property
    def size(self) -> int:
        return self.bpe_size + len(self.special_tokens()) + NUM_TIMESTAMPS

    def id_of(self, token: str) -> int:
        return self.ids()[token]


# The checkpoints OpenAI published, by Hugging Face id: vocabulary and mel bins. The processor of
# each is built in, so a hub id as baseModel needs no hub for the data stage.
_MULTI_99, _MULTI_100, _ENGLISH = Vocabulary(True, 99), Vocabulary(True, 100), Vocabulary(False, 99)
OPENAI_CHECKPOINTS: dict[str, tuple[Vocabulary, int]] = {
    **{f"openai/whisper-{size}.en": (_ENGLISH, 80) for size in ("tiny", "base", "small", "medium")},
    **{
        f"openai/whisper-{size}": (_MULTI_99, 80)
        for size in ("tiny", "base", "small", "medium", "large", "large-v1", "large-v2")
    },
    "openai/whisper-large-v3": (_MULTI_100, 128),
    "openai/whisper-large-v3-turbo": (_MULTI_100, 128),
}


def _whisper_assets() -> Path:
    """openai-whisper's package folder, found without importing it: only its bundled assets
    are used, and importing it would load numba and the rest of its transcription code."""
    spec = importlib.util.find_spec("whisper")
    if spec is None or spec.origin is None:
        raise RuntimeError("openai-whisper is not installed (its tokenizer assets are needed)")
    return Path(spec.origin).parent


@cache
def _bpe(encoding: str) -> tuple[dict[str, int], list[tuple[str, str]]]:
    from transformers.convert_slow_tokenizer import TikTokenConverter

    path = str(_whisper_assets() / "assets" / f"{encoding}.tiktoken")
    vocab, merges = TikTokenConverter(vocab_file=path).extract_vocab_merges_from_model(path)
    return vocab, merges


def build_tokenizer(vocab: Vocabulary) -> Any:
    """A WhisperTokenizer whose ids are openai-whisper's for this vocabulary."""
    from tokenizers import AddedToken
    from transformers import WhisperTokenizer

    bpe, merges = _bpe(vocab.encoding)
    # <|endoftext|> is also the padding token, as in OpenAI's checkpoints on the hub: without
    # one, Unsloth adds a pad token and resizes the embeddings (and the adapter saves them).
    tokenizer = WhisperTokenizer(vocab=dict(bpe), merges=list(merges), pad_token="<|endoftext|>")
    specials = vocab.special_tokens()[1:]  # <|endoftext|> is the tokenizer's own eos/unk
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    # Timestamps are ordinary (non-special) added tokens in Whisper, so decode keeps them unless
    # asked otherwise; they come last.
    tokenizer.add_tokens(
        [AddedToken(f"<|{i * 0.02:.2f}|>", normalized=False) for i in range(NUM_TIMESTAMPS)]
    )
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    if len(tokenizer) != vocab.size or tokenizer.convert_tokens_to_ids(
        "<|notimestamps|>"
    ) != vocab.id_of("<|notimestamps|>"):
        raise RuntimeError(f"built a tokenizer of {len(tokenizer)} tokens for {vocab}")
    return tokenizer


def build_processor(vocab: Vocabulary, num_mel_bins: int) -> Any:
    """A WhisperProcessor (feature extractor + tokenizer) with no download."""
    from transformers import WhisperFeatureExtractor, WhisperProcessor

    extractor = WhisperFeatureExtractor(feature_size=num_mel_bins)
    return WhisperProcessor(feature_extractor=extractor, tokenizer=build_tokenizer(vocab))


def save_processor(processor: Any, folder: Path) -> None:
    """save_pretrained plus normalizer.json, which transformers 5 no longer writes and Whisper's
    English normalizer (the WER's `werNormalized`) reads."""
    processor.save_pretrained(str(folder))
    english = _whisper_assets() / "normalizers" / "english.json"
    if not (folder / "normalizer.json").exists():
        shutil.copy(english, folder / "normalizer.json")


def english_spelling() -> dict[str, str]:
    return dict(json.loads((_whisper_assets() / "normalizers" / "english.json").read_text()))


def builtin_processor(model_id: str) -> Any | None:
    """The processor of an OpenAI checkpoint named by its hub id, or None for any other id."""
    known = OPENAI_CHECKPOINTS.get(model_id)
    if known is None:
        return None
    vocab, n_mels = known
    return build_processor(vocab, n_mels)


def generation_config(
    vocab: Vocabulary,
    suppress_tokens: list[int],
    begin_suppress_tokens: list[int] | None = None,
    alignment_heads: list[list[int]] | None = None,
) -> Any:
    """What Whisper's generate() needs: prompt ids, languages and tasks, suppression lists.

    The same fields as the hub's generation_config.json for OpenAI's checkpoints.
    """
    from transformers import GenerationConfig

    ids = vocab.ids()
    eot = ids["<|endoftext|>"]
    values: dict[str, Any] = {
        "decoder_start_token_id": ids["<|startoftranscript|>"],
        "bos_token_id": eot,
        "eos_token_id": eot,
        "pad_token_id": eot,
        "max_length": WHISPER_MAX_LABEL_TOKENS,
        "no_timestamps_token_id": ids["<|notimestamps|>"],
        "prev_sot_token_id": ids["<|startofprev|>"],
        "is_multilingual": vocab.multilingual,
        "suppress_tokens": list(suppress_tokens),
        "begin_suppress_tokens": list(begin_suppress_tokens or [220, eot]),
        "return_timestamps": False,
    }
    if alignment_heads:
        values["alignment_heads"] = [list(h) for h in alignment_heads]
    if vocab.multilingual:
        values["lang_to_id"] = {f"<|{c}|>": ids[f"<|{c}|>"] for c in vocab.languages}
        values["task_to_id"] = {
            "translate": ids["<|translate|>"],
            "transcribe": ids["<|transcribe|>"],
        }
    return GenerationConfig(**values)


def is_multilingual(tokenizer: Any) -> bool:
    """From the tokenizer itself, openai-whisper's rule: <|notimestamps|> is the last special
    token, and a vocabulary of 51865 tokens or more (it plus 1501 timestamps) is multilingual."""
    return int(tokenizer.convert_tokens_to_ids("<|notimestamps|>")) + 1 + NUM_TIMESTAMPS >= 51865


def set_decoder_prompt(tokenizer: Any, language: str, task: str) -> bool:
    """Set the prompt every label starts with: <|startoftranscript|><|lang|><|task|>
    <|notimestamps|>, or <|startoftranscript|><|notimestamps|> for an English-only model,
    which has no language or task to name. Returns whether the model is multilingual."""
    multilingual = is_multilingual(tokenizer)
    tokenizer.set_prefix_tokens(
        language=language if multilingual else None,
        task=task if multilingual else None,
        predict_timestamps=False,
    )
    return multilingual


def is_english_only_id(model_id: str) -> bool:
    """`openai/whisper-tiny.en`, `distil-whisper/distil-small.en`: the `.en` convention."""
    return model_id.rstrip("/").endswith(".en")
