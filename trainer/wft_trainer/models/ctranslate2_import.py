"""A faster-whisper (CTranslate2) Whisper folder -> a transformers `save_pretrained` folder.

faster-whisper folders (model.bin, config.json, tokenizer.json, vocabulary.txt) are how many
teams store Whisper, and how real weights reach machines with no hub. CTranslate2 converts only
the other way, so this module maps its `WhisperSpec` variables back onto
`WhisperForConditionalGeneration`'s parameters (the mapping CTranslate2's own
`TransformersConverter` applies, inverted):

- a self-attention `linear_0` is query, key and value stacked by rows (the key's bias, which
  Whisper does not have, is stored as zeros); cross-attention's `linear_1` is key and value;
- `ffn/linear_0` and `linear_1` are fc1 and fc2; `layer_norm` gamma and beta are weight and bias;
- the output projection is an alias of the token embeddings (tied, as in transformers).

The shapes give the architecture, the vocabulary size gives the tokenizer (`vocab.Vocabulary`),
and config.json gives the suppress lists and alignment heads of the generation config. The
weights keep the precision they were stored in (float16 for Systran's conversions); int8 and
int16 exports are dequantized to float32.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .ctranslate2_file import ModelFile, ModelFileError, read_model_file
from .vocab import Vocabulary, build_processor, generation_config, save_processor

log = logging.getLogger(__name__)

MODEL_FILE = "model.bin"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
# CTranslate2 writes these flags into a WhisperSpec; anything else is not Whisper's architecture.
_EXPECTED_FLAGS = {
    "decoder/pre_norm": 1,  # layer norm before each block
    "decoder/scale_embeddings": 0,  # Whisper does not scale token embeddings by sqrt(d)
    "decoder/activation": 3,  # GELU (CTranslate2's ActivationType.GELU)
}


def is_ctranslate2_layout(names: Iterable[str]) -> bool:
    """A folder whose files (paths relative to it) are a CTranslate2 model's: model.bin at the
    top (transformers writes model.safetensors or pytorch_model.bin instead)."""
    return MODEL_FILE in names


def added_token_ids(path: Path) -> dict[str, int]:
    """A Hugging Face tokenizer.json's added (special) tokens: content -> id."""
    try:
        added = json.loads(path.read_text()).get("added_tokens", [])
        return {t["content"]: int(t["id"]) for t in added}
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise ModelFileError(f"{path}: not a Hugging Face tokenizer file ({err})") from err


@dataclass
class ImportedModel:
    folder: Path
    vocabulary: Vocabulary
    num_mel_bins: int
    parameters: int
    source_dtype: str

    @property
    def english_only(self) -> bool:
        return not self.vocabulary.multilingual

    def describe(self) -> str:
        kind = "English-only" if self.english_only else "multilingual"
        return (
            f"{kind} Whisper, {self.parameters / 1e6:.1f}M parameters, {self.num_mel_bins} mel "
            f"bins, {self.source_dtype} weights"
        )


def import_ctranslate2(src: Path, dst: Path) -> ImportedModel:
    """Write a transformers Whisper (model, processor, generation config) for the folder `src`.

    Raises ModelFileError, naming the file, for a folder that is not a CTranslate2 Whisper.
    """
    from safetensors.torch import save_file

    src, dst = Path(src), Path(dst)
    model = read_model_file(src / MODEL_FILE)
    if model.spec != "WhisperSpec":
        raise ModelFileError(
            f"{src / MODEL_FILE}: a CTranslate2 {model.spec}, not a Whisper model (WhisperSpec)"
        )
    extra = _read_config(src / CONFIG_FILE)
    config, vocab = _whisper_config(model)
    _check_tokenizer(src / TOKENIZER_FILE, vocab)
    state = _state_dict(model, config.encoder_layers, config.decoder_layers)
    _check_against_architecture(state, config, src / MODEL_FILE)

    dst.mkdir(parents=True, exist_ok=True)
    dtype = str(state["model.decoder.embed_tokens.weight"].dtype).removeprefix("torch.")
    config.dtype = dtype
    config.save_pretrained(str(dst))
    save_file(state, str(dst / "model.safetensors"), metadata={"format": "pt"})
    generation_config(
        vocab,
        suppress_tokens=list(extra.get("suppress_ids", [])),
        begin_suppress_tokens=extra.get("suppress_ids_begin"),
        alignment_heads=extra.get("alignment_heads"),
    ).save_pretrained(str(dst))
    save_processor(build_processor(vocab, config.num_mel_bins), dst)
    imported = ImportedModel(
        folder=dst,
        vocabulary=vocab,
        num_mel_bins=config.num_mel_bins,
        parameters=sum(int(t.numel()) for t in state.values()),
        source_dtype=str(model.variables["decoder/embeddings/weight"].dtype),
    )
    log.info("imported %s from %s: %s", dst, src, imported.describe())
    return imported


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelFileError(f"{path}: missing (a faster-whisper folder has config.json)")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, ValueError) as err:
        raise ModelFileError(f"{path}: not JSON ({err})") from err
    if not isinstance(data, dict):
        raise ModelFileError(f"{path}: expected a JSON object")
    return data


def _layer_count(model: ModelFile, side: str) -> int:
    indices = {
        int(name.split("/")[1].removeprefix("layer_"))
        for name in model.variables
        if name.startswith(f"{side}/layer_") and name.split("/")[1].removeprefix("layer_").isdigit()
    }
    if not indices or indices != set(range(len(indices))):
        raise ModelFileError(f"{model.path}: {side} layers are missing or not numbered 0..n-1")
    return len(indices)


def _whisper_config(model: ModelFile) -> tuple[Any, Vocabulary]:
    from transformers import WhisperConfig

    v = model.variables
    try:
        for flag, expected in _EXPECTED_FLAGS.items():
            if flag in v and model.scalar(flag) != expected:
                raise ModelFileError(
                    f"{model.path}: {flag} is {model.scalar(flag)}, Whisper's is {expected}"
                )
        d_model, n_mels, _ = v["encoder/conv1/weight"].shape
        n_vocab = v["decoder/embeddings/weight"].shape[0]
        vocab = Vocabulary.of_size(n_vocab)
        eot = vocab.id_of("<|endoftext|>")
        config = WhisperConfig(
            vocab_size=n_vocab,
            num_mel_bins=n_mels,
            d_model=d_model,
            encoder_layers=_layer_count(model, "encoder"),
            decoder_layers=_layer_count(model, "decoder"),
            encoder_attention_heads=model.scalar("encoder/num_heads"),
            decoder_attention_heads=model.scalar("decoder/num_heads"),
            encoder_ffn_dim=v["encoder/layer_0/ffn/linear_0/weight"].shape[0],
            decoder_ffn_dim=v["decoder/layer_0/ffn/linear_0/weight"].shape[0],
            max_source_positions=v["encoder/position_encodings/encodings"].shape[0],
            max_target_positions=v["decoder/position_encodings/encodings"].shape[0],
            decoder_start_token_id=vocab.id_of("<|startoftranscript|>"),
            bos_token_id=eot,
            eos_token_id=eot,
            pad_token_id=eot,
            begin_suppress_tokens=[220, eot],
        )
    except KeyError as err:
        raise ModelFileError(f"{model.path}: no variable {err} (not a Whisper model)") from err
    except ValueError as err:
        if isinstance(err, ModelFileError):
            raise
        raise ModelFileError(f"{model.path}: {err}") from err
    return config, vocab


def _check_tokenizer(path: Path, vocab: Vocabulary) -> None:
    """The folder's tokenizer.json must agree with the vocabulary the weights imply: a model whose
    special tokens sit elsewhere would be trained on the wrong prompt."""
    if not path.is_file():
        return  # vocabulary.txt alone (older exports): the weights' size decides
    found = added_token_ids(path)
    expected = vocab.ids()
    wrong = {tok: i for tok, i in found.items() if tok in expected and expected[tok] != i}
    if wrong:
        tok, i = next(iter(wrong.items()))
        raise ModelFileError(
            f"{path}: {tok} has id {i}, but a Whisper with {vocab.size} tokens has it at "
            f"{expected[tok]} ({len(wrong)} special tokens disagree)"
        )


def _state_dict(model: ModelFile, encoder_layers: int, decoder_layers: int) -> dict[str, Any]:
    import torch

    state: dict[str, torch.Tensor] = {}

    def put(name: str, array: np.ndarray) -> None:
        state[name] = torch.from_numpy(np.array(array))  # a copy: the file is mapped read-only

    def weight(name: str) -> np.ndarray:
        return model.weight(name)

    def norm(dst: str, src: str) -> None:
        put(f"{dst}.weight", weight(f"{src}/gamma"))
        put(f"{dst}.bias", weight(f"{src}/beta"))

    def linear(dst: str, src: str) -> None:
        put(f"{dst}.weight", weight(f"{src}/weight"))
        put(f"{dst}.bias", weight(f"{src}/bias"))

    def stacked(dst: str, src: str, names: tuple[str, ...]) -> None:
        """Split a fused projection; the key projection has no bias in Whisper."""
        weights = np.split(weight(f"{src}/weight"), len(names))
        biases = np.split(weight(f"{src}/bias"), len(names))
        for name, w, b in zip(names, weights, biases, strict=True):
            put(f"{dst}.{name}.weight", w)
            if name != "k_proj":
                put(f"{dst}.{name}.bias", b)

    def block(dst: str, src: str, cross: bool) -> None:
        stacked(
            f"{dst}.self_attn", f"{src}/self_attention/linear_0", ("q_proj", "k_proj", "v_proj")
        )
        linear(f"{dst}.self_attn.out_proj", f"{src}/self_attention/linear_1")
        norm(f"{dst}.self_attn_layer_norm", f"{src}/self_attention/layer_norm")
        if cross:
            linear(f"{dst}.encoder_attn.q_proj", f"{src}/attention/linear_0")
            stacked(f"{dst}.encoder_attn", f"{src}/attention/linear_1", ("k_proj", "v_proj"))
            linear(f"{dst}.encoder_attn.out_proj", f"{src}/attention/linear_2")
            norm(f"{dst}.encoder_attn_layer_norm", f"{src}/attention/layer_norm")
        linear(f"{dst}.fc1", f"{src}/ffn/linear_0")
        linear(f"{dst}.fc2", f"{src}/ffn/linear_1")
        norm(f"{dst}.final_layer_norm", f"{src}/ffn/layer_norm")

    try:
        for conv in ("conv1", "conv2"):
            linear(f"model.encoder.{conv}", f"encoder/{conv}")
        put("model.encoder.embed_positions.weight", weight("encoder/position_encodings/encodings"))
        for i in range(encoder_layers):
            block(f"model.encoder.layers.{i}", f"encoder/layer_{i}", cross=False)
        norm("model.encoder.layer_norm", "encoder/layer_norm")
        put("model.decoder.embed_tokens.weight", weight("decoder/embeddings/weight"))
        put("model.decoder.embed_positions.weight", weight("decoder/position_encodings/encodings"))
        for i in range(decoder_layers):
            block(f"model.decoder.layers.{i}", f"decoder/layer_{i}", cross=True)
        norm("model.decoder.layer_norm", "decoder/layer_norm")
    except KeyError as err:
        raise ModelFileError(f"{model.path}: no variable {err} (not a Whisper model)") from err
    # One dtype throughout (a dequantized int8 weight is float32 beside float16 norms).
    dtypes = {t.dtype for t in state.values()}
    if len(dtypes) > 1:
        state = {k: t.float() for k, t in state.items()}
    return state


def _check_against_architecture(state: dict[str, Any], config: Any, path: Path) -> None:
    """Every parameter of the architecture, with its shape: built on the meta device, no memory."""
    import torch
    from transformers import WhisperForConditionalGeneration

    with torch.device("meta"):
        reference = WhisperForConditionalGeneration(config).state_dict()
    reference.pop("proj_out.weight", None)  # tied to the token embeddings
    missing = sorted(set(reference) - set(state))
    wrong = [k for k in reference if k in state and tuple(state[k].shape) != reference[k].shape]
    if missing or wrong:
        detail = f"missing {missing[:3]}" if missing else f"wrong shape for {wrong[:3]}"
        raise ModelFileError(f"{path}: does not fill a Whisper of its own dimensions ({detail})")
