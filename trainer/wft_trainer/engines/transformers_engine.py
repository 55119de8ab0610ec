"""transformers + peft: the CPU path (tests, the local demo) and the GPU baseline.

On CUDA, `quantization` 4bit/8bit loads the base through bitsandbytes (QLoRA) and `none` loads
it in bf16; gradient checkpointing (engines.memory's choice) keeps activations small, and every
encoder and decoder layer is compiled. On the CPU, bitsandbytes' 4-bit
kernels exist but are far too slow to train with, so the base stays float32 and a log line says
so: the adapter is the same shape either way and loads onto any copy of the base.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from wft_api.conditions import Reason
from wft_api.v1alpha1 import WhisperFineTuneSpec

from ..errors import TrainerFailure
from ..models.source import is_local
from . import LoadedModel, compile_layers, compile_wanted, feature_dtype_of, gpu_compute_dtype

log = logging.getLogger(__name__)


def lora_config(spec: WhisperFineTuneSpec) -> Any:
    from peft import LoraConfig

    # Bare projection names match every self- and cross-attention (and fc1/fc2) in both the
    # encoder and the decoder: peft matches on the module name's last component.
    return LoraConfig(
        r=spec.lora.rank,
        lora_alpha=spec.lora.alpha,  # type: ignore[arg-type]  # annotated int; used as alpha / r
        lora_dropout=spec.lora.dropout,
        target_modules=list(spec.lora.target_modules),
        bias="none",
    )


@dataclass
class LoadedBase:
    """The first half of the load, which needs neither the data nor the memory policy: the base
    model on its device and, for a 16-bit base, the LoRA already added. It can run on a thread
    while the data stage works (engines.Loading)."""

    model: Any  # a peft.PeftModel (16-bit base), or the quantized base still without LoRA
    applied: str  # the quantization applied: "4bit", "8bit" or "none"
    notes: list[str]


def load_transformers(
    spec: WhisperFineTuneSpec, model_path: str, checkpointing: str = "on"
) -> LoadedModel:
    return finish_transformers(spec, load_base(spec, model_path), checkpointing)


def load_base(spec: WhisperFineTuneSpec, model_path: str) -> LoadedBase:
    """from_pretrained onto the device, then, unless quantized, the spec's LoRA."""
    from transformers import WhisperForConditionalGeneration

    cuda = torch.cuda.is_available()
    # A local folder (an s3:// base mirrored) never touches the hub; an id may download.
    kwargs: dict[str, Any] = {
        "local_files_only": is_local(model_path),
        "attn_implementation": "sdpa",
    }
    applied = "none"
    notes: list[str] = []
    if cuda:
        dtype = gpu_compute_dtype()
        kwargs["dtype"] = dtype
        kwargs["device_map"] = {"": torch.cuda.current_device()}
        if spec.quantization in ("4bit", "8bit"):
            from transformers import BitsAndBytesConfig

            applied = spec.quantization
            kwargs["quantization_config"] = (
                BitsAndBytesConfig(
                    load_in_4bit=True,
                    bnb_4bit_quant_type="nf4",
                    bnb_4bit_use_double_quant=True,
                    bnb_4bit_compute_dtype=dtype,
                )
                if applied == "4bit"
                else BitsAndBytesConfig(load_in_8bit=True)
            )
    else:
        kwargs["dtype"] = torch.float32
        if spec.quantization != "none":
            notes.append(
                f"quantization {spec.quantization!r} needs a CUDA GPU; training the LoRA on an "
                "unquantized float32 base on the CPU"
            )
    for note in notes:
        log.warning(note)
    started = time.monotonic()
    try:
        model = WhisperForConditionalGeneration.from_pretrained(model_path, **kwargs)
    except (OSError, ValueError) as err:
        raise TrainerFailure(
            Reason.MODEL_LOAD_FAILED, f"cannot load the base model from {model_path}: {err}"
        ) from err
    model.config.use_cache = False  # incompatible with checkpointing; generate() re-enables it
    if applied == "8bit":
        _quiet_int8_cast_notice()
    loaded_at = time.monotonic()
    if applied == "none":
        # LoRA before the checkpointing choice: a 16-bit base takes it afterwards
        # (finish_transformers); a quantized one must be prepared for it first.
        model = _add_lora(spec, model)
    # Where the load stage's seconds go (issue 19's time to first step).
    log.info(
        "base model loaded in %.1f s%s",
        loaded_at - started,
        f", LoRA added in {time.monotonic() - loaded_at:.1f} s" if applied == "none" else "",
    )
    return LoadedBase(model, applied, notes)


def _add_lora(spec: WhisperFineTuneSpec, model: Any) -> Any:
    from peft import get_peft_model

    # LoRA's A matrices are random: seed them so that the same spec gives the same adapter.
    torch.manual_seed(spec.training.seed)
    return get_peft_model(model, lora_config(spec))


def finish_transformers(
    spec: WhisperFineTuneSpec, base: LoadedBase, checkpointing: str = "on"
) -> LoadedModel:
    """The second half: gradient checkpointing as engines.memory chose it (from the data's
    longest label), LoRA on a quantized base, and the compiled layers."""
    from peft import prepare_model_for_kbit_training

    cuda = torch.cuda.is_available()
    model, applied, notes = base.model, base.applied, list(base.notes)
    recompute = checkpointing != "off"  # "offload" is Unsloth's; engines.memory maps it
    if applied != "none":
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=recompute,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
        peft_model = _add_lora(spec, model)
    else:
        peft_model = model
        if recompute:
            # Non-reentrant checkpointing needs no grad on the inputs (the features never have
            # one). The input hook is what peft adds when it wraps a checkpointed model: the
            # same graph as enabling checkpointing before LoRA.
            inner = peft_model.get_base_model()
            inner.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
            inner.enable_input_require_grads()
    if not cuda:
        peft_model.to(torch.device("cpu"))
    else:
        # Regional compilation of each stack (engines.compile_layers): 1.63x a bf16 large-v3
        # step on the H200. Only on CUDA: the CPU tier has no compiler guarantee, and the
        # tiny models there compile for longer than they train.
        parts = tuple(p for p in ("encoder", "decoder") if compile_wanted(p))
        if parts:
            count = compile_layers(peft_model, parts)
            notes.append(f"compiled {count} {' and '.join(parts)} layers")
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    return LoadedModel(
        model=peft_model,
        engine="transformers",
        device=device,
        feature_dtype=feature_dtype_of(peft_model),
        quantization=applied,
        compute_dtype=gpu_compute_dtype() if cuda else None,
        notes=notes,
    )


_INT8_CAST_NOTICE = "MatMul8bitLt: inputs will be cast"


class _DropInt8CastNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_INT8_CAST_NOTICE)


def _quiet_int8_cast_notice() -> None:
    """bitsandbytes reports every 8-bit matmul whose input is not float16 (peft keeps the layer
    norms in float32, so that is every one): 58,000 lines in three steps on the H100, which
    would bury the Job's log. The cast itself is how LLM.int8 works. Newer releases log it,
    older ones warn."""
    warnings.filterwarnings("ignore", message=_INT8_CAST_NOTICE)
    logger = logging.getLogger("bitsandbytes.autograd._functions")
    if not any(isinstance(f, _DropInt8CastNotice) for f in logger.filters):
        logger.addFilter(_DropInt8CastNotice())
