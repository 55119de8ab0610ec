"""Training engines: how the base model is loaded, quantized and wrapped with LoRA.

Two engines, one contract (`LoadedModel`): `unsloth` (GPU only; imported only on that path,
because Unsloth cannot even be imported without an accelerator) and `transformers` (+peft, and
bitsandbytes where quantization asks and CUDA is present: the CPU path and the GPU baseline).
Everything after loading (training loop, evaluation, saving) is shared and engine-agnostic.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from wft_api.conditions import Reason
from wft_api.languages import LANGUAGES
from wft_api.v1alpha1 import WHISPER_MAX_LABEL_TOKENS, WhisperFineTuneSpec

from ..errors import TrainerFailure
from .memory import Checkpointing, auto_engine, choose_checkpointing, read_shape, shape_hint

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A trainable PEFT-wrapped Whisper and what the loop needs to feed it."""

    model: Any  # a peft.PeftModel around WhisperForConditionalGeneration
    engine: str  # "unsloth" or "transformers"
    device: torch.device
    feature_dtype: torch.dtype  # the dtype the encoder's first conv expects
    quantization: str  # what was actually applied: "4bit", "8bit" or "none"
    # The 16-bit dtype the GPU computes in (autocast); None on the CPU. Not always the feature
    # dtype: preparing a quantized base for training upcasts its convolutions to float32.
    compute_dtype: torch.dtype | None = None
    notes: list[str] = field(default_factory=list)
    # The gradient checkpointing in force (off, on, offload) and why it was chosen.
    checkpointing: Checkpointing = field(default_factory=lambda: Checkpointing("off", "default"))

    def train_mode(self) -> None:
        if self.engine == "unsloth":
            from unsloth import FastModel

            FastModel.for_training(self.model)
        else:
            self.model.train()

    def eval_mode(self) -> None:
        if self.engine == "unsloth":
            from unsloth import FastModel

            FastModel.for_inference(self.model)
        else:
            self.model.eval()

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The mixed-precision compute dtype on a GPU (bf16, or fp16 where bf16 is missing)."""
        return self.compute_dtype if self.device.type == "cuda" else None

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Mixed precision around every forward on the GPU, as Hugging Face's Trainer and
        Unsloth's do with bf16=True.

        Both engines keep the LoRA weights in float32 next to the 16-bit base (the optimizer
        updates them in full precision). Without autocast, peft casts every adapted layer's
        input to float32, and Unsloth's LoRA forward casts the base layer's output too: a copy
        of every activation at every adapted projection, about a third of the GPU time in our
        H100 profile. Under autocast the adapter matmuls run in 16 bits and nothing is copied.
        """
        dtype = self.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=dtype)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The forward pass of a training step (and of the batch size probe): the batch's loss."""
        feats = batch["input_features"].to(self.device, non_blocking=True)
        labels = batch["labels"].to(self.device, non_blocking=True)
        with self.autocast():  # the backward pass runs outside it, as torch.amp advises
            out = self.model(input_features=feats.to(self.feature_dtype), labels=labels)
        return out.loss  # type: ignore[no-any-return]


def choose_engine(
    spec: WhisperFineTuneSpec,
    cuda: bool | None = None,
    gpu_memory_bytes: int | None = None,
    ranks: int = 1,
) -> str:
    """auto means transformers on a GPU of 80 GB or more and for models narrower than medium,
    Unsloth for medium and large on smaller GPUs, transformers without CUDA
    (memory.auto_engine has the measurements); unsloth without CUDA fails. Without `cuda`
    given, both come from the GPU the trainer sees. With several ranks (GPUs) auto means
    transformers: data parallelism is built and tested on that engine only, and the API
    refuses engine 'unsloth' with more than one GPU."""
    has_cuda = torch.cuda.is_available() if cuda is None else cuda
    if spec.engine == "unsloth" and not has_cuda:
        raise TrainerFailure(
            Reason.TRAINER_ERROR,
            "spec.engine is 'unsloth' but no CUDA GPU is visible to the trainer; use engine "
            "'transformers' or 'auto', or give the pod a GPU (resources.gpus)",
        )
    if spec.engine == "unsloth" and ranks > 1:
        raise TrainerFailure(
            Reason.TRAINER_ERROR,
            f"spec.engine 'unsloth' trains on one GPU only, and this run has {ranks} ranks; use "
            "engine 'transformers' or 'auto' with several GPUs or nodes, or set resources.gpus "
            "and resources.nodes to 1",
        )
    if spec.engine == "auto" and ranks > 1:
        return "transformers"
    if spec.engine == "auto":
        if cuda is None and gpu_memory_bytes is None:
            gpu_memory_bytes = gpu_total_memory()
        return auto_engine(spec.base_model, has_cuda, gpu_memory_bytes)[0]
    return spec.engine


def gpu_total_memory() -> int | None:
    """The first GPU's size, or None without one. Reads the device's properties only, no
    allocation, so the allocator setting Unsloth's import makes afterwards still applies."""
    if not torch.cuda.is_available():
        return None
    return int(torch.cuda.get_device_properties(0).total_memory)


def preload(spec: WhisperFineTuneSpec, ranks: int = 1) -> str:
    """Choose the engine and, for Unsloth, import it now: it must patch transformers and peft
    before anything else (the data stage's processor included) imports them."""
    name = choose_engine(spec, ranks=ranks)
    if name == "unsloth":
        import unsloth  # noqa: F401  (it also sets PYTORCH_CUDA_ALLOC_CONF)
    elif torch.cuda.is_available():
        # The allocator mode Unsloth sets for itself, so that both engines (and the benchmark's
        # baseline) run on the same one: segments that grow in place fragment far less when
        # every batch has a different label width. Read at the first CUDA allocation, which
        # comes later (loading the model); a value the user set wins.
        os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    return name


def load(
    spec: WhisperFineTuneSpec,
    model_path: str,
    engine: str | None = None,
    english_only: bool = False,
    label_tokens: int = WHISPER_MAX_LABEL_TOKENS,
) -> LoadedModel:
    """Load the base model at `model_path` with the chosen engine and add the spec's LoRA, all
    in this thread (`Loading` is the same, begun while the data stage runs).

    An English-only model (`*.en`) has no language or task in its prompt: generate() refuses
    them, and Unsloth is not told any. Gradient checkpointing is chosen here, from the GPU's
    free memory before loading and the model's shape; `label_tokens` is the longest label of
    the training set.
    """
    return Loading(spec, model_path, engine, english_only, background=False).result(label_tokens)


class Loading:
    """The base model's load, begun before the data is ready (issue 19's time to first step).

    With the transformers engine the first half (importing the model code and peft, CUDA's
    start, from_pretrained onto the GPU and, for a 16-bit base, LoRA: about 7 s of a second
    Job's 33 on the H100, run 24) needs neither the data nor the memory policy, so it runs on a
    thread while the data stage downloads, decodes and extracts features (its CPU work is in
    worker processes). `result` then chooses the gradient checkpointing from the longest label
    and the free memory measured before the load, and finishes. Unsloth's load stays whole and
    in the caller's thread: checkpointing is one of its load arguments, and its loader patches
    and generates code. `WFT_OVERLAP_LOAD=0` loads in the caller's thread as before (the
    benchmarks' baseline, and a way out should the overlap ever misbehave).
    """

    def __init__(
        self,
        spec: WhisperFineTuneSpec,
        model_path: str,
        engine: str | None = None,
        english_only: bool = False,
        background: bool = True,
    ) -> None:
        self.name = engine or choose_engine(spec)
        self.english_only = english_only
        self.notes: list[str] = []
        cuda = torch.cuda.is_available()
        if spec.engine == "auto" and self.name == "transformers" and cuda:
            # The measured advantage was transformers with a 16-bit base; a 4-bit one through
            # bitsandbytes saves some memory and costs speed.
            single_gpu_choice, why = auto_engine(spec.base_model, True, gpu_total_memory())
            if single_gpu_choice != self.name:  # choose_engine's rule for several ranks decided
                why = "several GPUs (data parallel) train with transformers"
            if spec.quantization != "none":
                why += f"; quantization {spec.quantization!r} is for Unsloth: the base is 16-bit"
                spec = spec.model_copy(update={"quantization": "none"})
            self.notes.append(f"engine auto: {why}")
        self.spec = spec
        # A local folder: absolute, so that no loader mistakes it for a hub id.
        self.model_path = (
            str(Path(model_path).resolve()) if Path(model_path).is_dir() else model_path
        )
        self._free_bytes: int | None = None
        self._base: Any = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        # CUDA's current device belongs to a thread: a rank's own GPU (distributed.Ranks sets
        # it in this thread) must be set again in the loading one, or every rank loads onto 0.
        self._device = torch.cuda.current_device() if cuda else None
        if self.name == "transformers" and background and overlap_wanted():
            self._thread = threading.Thread(target=self._first_half, name="wft-load", daemon=True)
            self._thread.start()

    def _first_half(self) -> None:
        from .transformers_engine import load_base

        try:
            if self._device is not None:
                torch.cuda.set_device(self._device)
            # Free memory before the weights arrive: what the checkpointing policy plans with.
            self._free_bytes = torch.cuda.mem_get_info()[0] if torch.cuda.is_available() else None
            self._base = load_base(self.spec, self.model_path)
        except BaseException as err:  # raised again in the caller's thread, by result()
            self._error = err

    def abandon(self, timeout: float = 60.0) -> None:
        """The run ends before the model is used (the data stage failed, a SIGTERM): let the
        load's thread end first, up to `timeout` seconds, so that the process does not exit
        while CUDA copies weights in another thread (its exit code is what the Job acts on)."""
        if self._thread is not None and self._thread.is_alive():
            log.info("waiting for the base model's load to end before exiting")
            self._thread.join(timeout)

    def result(self, label_tokens: int = WHISPER_MAX_LABEL_TOKENS) -> LoadedModel:
        """The loaded model, LoRA added, checkpointing chosen for labels of `label_tokens`."""
        spec, name, cuda = self.spec, self.name, torch.cuda.is_available()
        if self._thread is not None:
            waited = time.monotonic()
            self._thread.join()
            log.info(
                "the base model's load, begun during the data stage, was waited for %.1f s",
                time.monotonic() - waited,
            )
            if self._error is not None:
                raise self._error
            free = self._free_bytes
        else:
            free = torch.cuda.mem_get_info()[0] if cuda else None
        checkpointing = choose_checkpointing(
            spec.training.gradient_checkpointing,
            name,
            read_shape(self.model_path) or shape_hint(spec.base_model),
            spec.quantization if cuda else "none",
            spec.training.batch_size,
            label_tokens,
            free,
        )
        notes = [
            *self.notes,
            f"gradient checkpointing {checkpointing.mode}: {checkpointing.reason}",
        ]
        for note in notes:
            log.info(note)
        if name == "unsloth":
            from .unsloth_engine import load_unsloth  # imports unsloth: GPU path only

            loaded = load_unsloth(spec, self.model_path, self.english_only, checkpointing.mode)
        else:
            from .transformers_engine import finish_transformers, load_base

            base = self._base if self._thread is not None else load_base(spec, self.model_path)
            loaded = finish_transformers(spec, base, checkpointing.mode)
        loaded.notes[:0] = notes
        loaded.checkpointing = checkpointing
        configure_generation(loaded.model, spec, self.english_only)
        return loaded


def overlap_wanted() -> bool:
    return os.environ.get("WFT_OVERLAP_LOAD", "1") != "0"


def language_name(code: str) -> str:
    """Whisper's language name for a code ('en' -> 'English'), as Unsloth's loader wants it."""
    return LANGUAGES[code].title()


def configure_generation(model: Any, spec: WhisperFineTuneSpec, english_only: bool) -> None:
    """Language and task as Whisper's generate() wants them; nothing forced left over.

    The hub's older configs carry `forced_decoder_ids`, which fight with `language=`/`task=` in
    transformers 5; Unsloth's Whisper notebook clears them and empties `suppress_tokens`.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    gen = base.generation_config
    gen.language = None if english_only else spec.language
    gen.task = None if english_only else spec.task
    gen.forced_decoder_ids = None
    gen.suppress_tokens = []
    base.config.forced_decoder_ids = None
    base.config.suppress_tokens = []


def feature_dtype_of(model: Any) -> torch.dtype:
    """The encoder's first convolution is never quantized: its weight dtype is the input dtype."""
    for name, module in model.named_modules():
        if name.endswith("encoder.conv1") and hasattr(module, "weight"):
            return module.weight.dtype  # type: ignore[no-any-return]
    return torch.float32


def compile_encoder_layers(model: Any, backend: str = "inductor") -> int:
    """Compile each of Whisper's encoder layers as its own region; returns how many.

    Unsloth compiles every decoder layer but leaves the encoder eager, and the encoder does most
    of the work: 1500 audio frames per sample against about a hundred label tokens. Compiling
    layer by layer (PyTorch's "regional compilation" recipe) rather than the whole model keeps
    the compile short, since every layer has the same code and shares one graph, and leaves the
    gradient checkpointing between layers untouched. On the H100 this made Unsloth's step 3.7%
    faster with 0.33 GiB less peak memory, for about 30 s of compilation
    (docs/benchmarks.md, run 10). Compilation happens at the first forward of each mode
    (evaluation, training).
    """
    return compile_layers(model, ("encoder",), backend)


def compile_layers(
    model: Any, parts: tuple[str, ...] = ("encoder", "decoder"), backend: str = "inductor"
) -> int:
    """Regional compilation of the named stacks (`encoder`, `decoder`); returns the layer count.

    The transformers engine compiles both: on the H200 a bf16 large-v3 step ran 1.63x faster
    with every layer compiled (49.1 against 30.1 samples/s, 18% less peak memory: inductor fuses
    the layer norms, GELU and LoRA's additions), docs/benchmarks.md run 22.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    layers = [layer for part in parts for layer in getattr(base.model, part).layers]
    for layer in layers:
        layer.compile(backend=backend)
    return len(layers)


def compile_wanted(part: str) -> bool:
    """WFT_COMPILE_ENCODER=0 / WFT_COMPILE_DECODER=0 leave that stack eager: for a driver or
    compiler that fails on it, and as the benchmarks' baseline."""
    return os.environ.get(f"WFT_COMPILE_{part.upper()}", "1") != "0"


def gpu_compute_dtype() -> torch.dtype:
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def cuda_out_of_memory(
    batch_size: int, stage: str, auto: bool = False, cause: object = None
) -> TrainerFailure:
    if cause is not None:  # torch's own words (sizes, what is free) go to the log
        log.warning("CUDA out of memory during %s: %s", stage, cause)
    if batch_size == 1:
        hint = "not even one sample fits; use quantization '4bit', fewer LoRA targets or a GPU "
        hint += "with more memory"
    elif auto:
        hint = (
            "batchSize 'auto' backs off only until the first checkpoint fixes the batch size; "
            f"set spec.training.batchSize to a number below {batch_size}, or use quantization "
            "'4bit'"
        )
    else:
        hint = "set spec.training.batchSize lower (or 'auto'), or use quantization '4bit'"
    return TrainerFailure(
        Reason.CUDA_OUT_OF_MEMORY,
        f"CUDA out of memory at batch size {batch_size} during {stage}; {hint}",
    )
