"""Word error rate with real decoding, and the teacher-forced eval loss, streamed.

Each batch is decoded with `generate`, scored and dropped: only error counts (and a few
examples to show) are kept, never logits or the whole set's predictions, so memory stays flat
however large the eval split. (The notebook's logits-based `compute_metrics` keeps every logit
of the eval set and runs out of RAM on real sets.)
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import jiwer
import torch
from wft_api.v1alpha1 import WHISPER_MAX_LABEL_TOKENS

from .batching import WhisperCollator, make_loader
from .compile_cache import compiler_stats
from .engines import LoadedModel, cuda_out_of_memory
from .results import EvalResult, Example

log = logging.getLogger(__name__)

PROMPT_TOKENS = 4  # <|startoftranscript|><|lang|><|task|><|notimestamps|>
SAMPLES_KEPT = 5


class _WerCounter:
    """Running word-level edit counts (what jiwer sums over a corpus), batch by batch."""

    def __init__(self) -> None:
        self.errors = 0
        self.words = 0

    def add(self, refs: list[str], hyps: list[str]) -> None:
        pairs = [(r, h) for r, h in zip(refs, hyps, strict=True) if r.strip()]
        if not pairs:
            return
        out = jiwer.process_words([r for r, _ in pairs], [h for _, h in pairs])
        self.errors += out.substitutions + out.deletions + out.insertions
        self.words += out.substitutions + out.deletions + out.hits

    def value(self) -> float | None:
        return self.errors / self.words if self.words else None


def text_normalizer(processor: Any, language: str | None) -> Callable[[str], str]:
    """Whisper's EnglishTextNormalizer for English (with its British-to-American spelling map),
    its BasicTextNormalizer otherwise."""
    from transformers.models.whisper.english_normalizer import (
        BasicTextNormalizer,
        EnglishTextNormalizer,
    )

    if language in ("en", None):  # None: an English-only model
        from .models.vocab import english_spelling

        # A tokenizer built in (no normalizer.json beside it) gets openai-whisper's own map.
        spelling = getattr(processor.tokenizer, "english_spelling_normalizer", None)
        return EnglishTextNormalizer(spelling or english_spelling())
    return BasicTextNormalizer()


def max_new_tokens_for(eval_ds: Any) -> int:
    """Bound decoding by the longest reference (with margin): a hypothesis far longer than any
    reference is a hallucination loop, and a random or weak base model loops until 448."""
    longest = max((len(x) for x in eval_ds["labels"]), default=PROMPT_TOKENS)
    return int(min(WHISPER_MAX_LABEL_TOKENS - PROMPT_TOKENS, 2 * longest + 8))


def eager_evaluation() -> Any:
    """Evaluation runs compiled layers eagerly, its teacher-forced loss and its generation.

    Generation: cached decoding changes the cache's flags and length at every token, and every
    decoder layer guards on its own index, so on the GPU the compiled decoder layers recompiled
    until dynamo's limit (8) inside the baseline evaluation and then ran eagerly anyway (run
    23's log, docs/benchmarks.md). The teacher-forced loss: compiling its no-grad graphs cost
    17.0 s of a fresh Job's baseline evaluation (3.4 s with a restored compile cache) to run a
    forward that takes well under a second eagerly on an eval set of a few batches (run 24).
    Training keeps its compiled graphs."""
    return torch.compiler.set_stance("force_eager")


def adapter_adds_nothing(loaded: LoadedModel) -> bool:
    """True while every LoRA B matrix is zero, as peft creates them: the adapter's term
    B(A(x)) * scaling is then exactly zero, and the model computes its base model's function
    bit for bit. The baseline evaluation then runs without the adapter's layers: one matmul
    per adapted projection instead of three and no LoRA Python per call, which is what eager
    token-by-token decoding spends its time on (generation was 26-37 s of the baseline
    evaluation in run 24's first measurement). Only the transformers engine: Unsloth replaces
    peft's LoRA forward."""
    if loaded.engine != "transformers" or not hasattr(loaded.model, "disable_adapter"):
        return False
    b = [p.detach() for name, p in loaded.model.named_parameters() if "lora_B" in name]
    return bool(b) and int(torch.stack([x.count_nonzero() for x in b]).sum()) == 0


@torch.no_grad()
def evaluate(
    loaded: LoadedModel,
    eval_ds: Any,
    processor: Any,
    language: str | None,
    task: str | None,
    batch_size: int,
    generate: bool = True,
    on_batch: Callable[[int, int], None] | None = None,
) -> EvalResult:
    if eval_ds is None or len(eval_ds) == 0:
        return EvalResult(wer=None, wer_normalized=None, eval_loss=None, samples=0)
    cuda = loaded.device.type == "cuda"
    tokenizer = processor.tokenizer
    collator = WhisperCollator(loaded.model.config.decoder_start_token_id)
    normalize = text_normalizer(processor, language)
    max_new = max_new_tokens_for(eval_ds)
    # An English-only model takes neither (transformers refuses them for it).
    prompt = {"language": language, "task": task} if language else {}
    rows = eval_ds.with_format("numpy", columns=["input_features", "labels", "text", "audio"])
    batches = [
        list(range(i, min(i + batch_size, len(rows)))) for i in range(0, len(rows), batch_size)
    ]
    loader = make_loader(rows, batches, _EvalCollator(collator), cuda)
    raw, norm = _WerCounter(), _WerCounter()
    loss_sum, tokens = 0.0, 0
    examples: list[Example] = []
    loaded.eval_mode()
    seconds = {"loss": 0.0, "generation": 0.0}
    compiled_before = compiler_stats()
    base_only = adapter_adds_nothing(loaded)
    try:
        with (
            eager_evaluation(),
            loaded.model.disable_adapter() if base_only else contextlib.nullcontext(),
        ):
            for done, (batch, refs, audio) in enumerate(loader, start=1):
                started = time.monotonic()
                feats = batch["input_features"].to(loaded.device).to(loaded.feature_dtype)
                labels = batch["labels"].to(loaded.device)
                with loaded.autocast():
                    out = loaded.model(input_features=feats, labels=labels)
                n_tok = int((labels != -100).sum())
                loss_sum += float(out.loss) * n_tok  # HF's loss is the token mean
                tokens += n_tok
                del out
                seconds["loss"] += time.monotonic() - started
                started = time.monotonic()
                if generate:
                    with loaded.autocast():
                        ids = loaded.model.generate(
                            input_features=feats, max_new_tokens=max_new, use_cache=True, **prompt
                        )
                    hyps = [
                        h.strip() for h in tokenizer.batch_decode(ids, skip_special_tokens=True)
                    ]
                    raw.add(refs, hyps)
                    norm.add([normalize(r) for r in refs], [normalize(h) for h in hyps])
                    for r, h, a in zip(refs, hyps, audio, strict=True):
                        if len(examples) < SAMPLES_KEPT:
                            examples.append(Example(audio=a, reference=r, hypothesis=h))
                    seconds["generation"] += time.monotonic() - started
                if on_batch:
                    on_batch(done, len(batches))
    except torch.cuda.OutOfMemoryError as err:
        raise cuda_out_of_memory(batch_size, "evaluation", cause=err) from err
    compiled = compiler_stats()
    log.info(
        "evaluated %d samples in %d batches%s: teacher-forced loss %.1f s, generation %.1f s; "
        "torch compiled for %.1f s of it",
        len(rows),
        len(batches),
        " on the base model alone (the adapter adds nothing yet)" if base_only else "",
        seconds["loss"],
        seconds["generation"],
        compiled["compileSeconds"] - compiled_before["compileSeconds"],
    )
    return EvalResult(
        wer=raw.value(),
        wer_normalized=norm.value(),
        eval_loss=loss_sum / tokens if tokens else None,
        samples=len(rows),
        examples=examples,
    )


class _EvalCollator:
    """The training collator plus the reference texts and audio URIs (strings never reach the
    GPU)."""

    def __init__(self, inner: WhisperCollator) -> None:
        self.inner = inner

    def __call__(
        self, rows: Sequence[dict[str, Any]]
    ) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
        return self.inner(rows), [str(r["text"]) for r in rows], [str(r["audio"]) for r in rows]
