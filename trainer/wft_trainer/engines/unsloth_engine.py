"""Unsloth: the GPU path. Imported only when CUDA is present (Unsloth cannot import without it).

`import unsloth` must come before transformers and peft are used: it patches them. The calls are
the ones Unsloth's Whisper notebook makes, seen working on an H100 (docs/benchmarks.md):
FastModel.from_pretrained(auto_model=WhisperForConditionalGeneration, whisper_language=...,
whisper_task=...), get_peft_model (with the gradient checkpointing engines.memory chose), for_training.
"""

# ruff: noqa: I001  (import order matters here: unsloth before transformers and peft)
from __future__ import annotations

import os

import unsloth  # noqa: F401  (first: patches transformers and peft)
import torch
from unsloth import FastModel
from transformers import WhisperForConditionalGeneration
from wft_api.conditions import Reason
from wft_api.v1alpha1 import WhisperFineTuneSpec

from ..errors import TrainerFailure
from . import (
    LoadedModel,
    compile_encoder_layers,
    compile_wanted,
    feature_dtype_of,
    gpu_compute_dtype,
    language_name,
)


# Unsloth's names for the three checkpointing modes: "unsloth" is its offloaded variant, which
# keeps each layer's input in host RAM.
UNSLOTH_CHECKPOINTING: dict[str, bool | str] = {"off": False, "on": True, "offload": "unsloth"}


def load_unsloth(
    spec: WhisperFineTuneSpec, model_path: str, english_only: bool, checkpointing: str = "offload"
) -> LoadedModel:
    # Unsloth writes compiled kernels next to the working directory unless told otherwise; a
    # read-only image root would break that.
    os.environ.setdefault("UNSLOTH_COMPILE_LOCATION", "/tmp/unsloth_compiled_cache")
    try:
        model, _tokenizer = FastModel.from_pretrained(
            model_path,
            auto_model=WhisperForConditionalGeneration,
            # An English-only model's prompt names neither (generate() refuses them).
            whisper_language=None if english_only else language_name(spec.language),
            whisper_task=None if english_only else spec.task,
            load_in_4bit=spec.quantization == "4bit",
            load_in_8bit=spec.quantization == "8bit",
            dtype=None,  # bf16 where the GPU supports it
        )
    except (OSError, ValueError) as err:
        raise TrainerFailure(
            Reason.MODEL_LOAD_FAILED, f"cannot load the base model from {model_path}: {err}"
        ) from err
    model = FastModel.get_peft_model(
        model,
        r=spec.lora.rank,
        lora_alpha=spec.lora.alpha,
        target_modules=list(spec.lora.target_modules),
        lora_dropout=spec.lora.dropout,
        bias="none",
        use_gradient_checkpointing=UNSLOTH_CHECKPOINTING[checkpointing],
        random_state=spec.training.seed,
        task_type=None,
    )
    FastModel.for_training(model)
    model.config.use_cache = False
    notes = []
    # Unsloth compiles the decoder's layers; ours add the encoder's. WFT_COMPILE_ENCODER=0 turns
    # it off (a driver or compiler that fails on it; the encoder_compile benchmark's baseline).
    if compile_wanted("encoder"):
        count = compile_encoder_layers(model)
        notes.append(f"compiled {count} encoder layers")
    return LoadedModel(
        model=model,
        engine="unsloth",
        device=torch.device("cuda", torch.cuda.current_device()),
        feature_dtype=feature_dtype_of(model),
        quantization=spec.quantization,
        compute_dtype=gpu_compute_dtype(),  # what dtype=None picked for the base
        notes=notes,
    )
