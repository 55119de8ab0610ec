"""The training loop: explicit, so that a checkpoint captures everything and resume is exact.

One optimizer step = `gradientAccumulationSteps` micro-batches. The loop checks for a stop
request (SIGTERM) after every optimizer step, saves a checkpoint and raises `Preempted`, so a
retried Job resumes where this one stopped. A NaN or infinite loss stops the run
(`NonFiniteLoss`) when it is read back, before the step reaches the curve or a checkpoint;
only under float16 loss scaling, whose scaler skips such a step's update, do isolated ones pass.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from wft_api.v1alpha1 import TrainingSpec

from .batch_probe import choose_batch_size
from .batching import ResumableBatchSampler, WhisperCollator, as_rows, make_loader
from .checkpoint import Checkpoint, CheckpointStore, load_adapter_weights, restore_rng, rng_state
from .engines import LoadedModel, cuda_out_of_memory
from .errors import non_finite_loss

log = logging.getLogger(__name__)

DEFAULT_EPOCHS = 3.0
# With float16 loss scaling, a step whose loss is not finite changes no weight (the scaler skips
# it); this many in a row means the forward pass itself is broken, and the run stops.
MAX_NON_FINITE_IN_A_ROW = 3


class Preempted(Exception):
    """SIGTERM arrived; a checkpoint was saved (or there was nothing to save yet)."""

    def __init__(self, step: int, resumes_at: int | None = None) -> None:
        resumes_at = step if resumes_at is None else resumes_at
        where = f"step {resumes_at}" if resumes_at else "the start"
        super().__init__(f"stopped by SIGTERM at step {step}; the next attempt resumes at {where}")
        self.step = step


@dataclass
class StepReport:
    step: int
    total_steps: int
    loss: float
    learning_rate: float
    epoch: float
    step_seconds: float
    samples_per_second: float | None
    batch_size: int


@dataclass
class TrainResult:
    steps: int
    total_steps: int
    batch_size: int
    loss_curve: list[list[float]]  # [step, loss]
    eval_losses: list[list[float]]  # [step, eval loss]
    samples_per_second: float | None  # steady state: after the first step
    train_seconds: float
    first_step_seconds: float | None
    peak_gpu_bytes: int | None
    resumed_from: int | None
    step_seconds: list[float] = field(default_factory=list)  # this attempt's steps
    # The autocast dtype ("bfloat16", "float16") on a GPU, None in float32 on the CPU; with
    # float16, the loss scale at the end (a scale that fell far below its start of 65536 means
    # many steps overflowed and were skipped).
    mixed_precision: str | None = None
    loss_scale: float | None = None


def total_steps(training: TrainingSpec, n_train: int, batch_size: int) -> int:
    if training.max_steps is not None:
        return training.max_steps
    epochs = training.epochs if training.epochs is not None else DEFAULT_EPOCHS
    micro_per_epoch = math.ceil(n_train / batch_size)
    return max(1, math.ceil(epochs * micro_per_epoch / training.gradient_accumulation_steps))


def build_optimizer(training: TrainingSpec, params: list[torch.nn.Parameter], cuda: bool) -> Any:
    lr, wd = training.learning_rate, training.weight_decay
    if training.optimizer == "adamw_8bit":
        if cuda:
            import bitsandbytes as bnb

            return bnb.optim.AdamW8bit(params, lr=lr, weight_decay=wd)  # type: ignore[attr-defined]
        log.warning("optimizer adamw_8bit needs CUDA; using adamw_torch on the CPU")
    if training.optimizer == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(params, lr=lr, weight_decay=wd, scale_parameter=False, relative_step=False)
    if training.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=wd)
    # The fused kernel updates every LoRA tensor in one launch instead of a dozen per tensor.
    return torch.optim.AdamW(params, lr=lr, weight_decay=wd, fused=cuda)


def build_scheduler(training: TrainingSpec, optimizer: Any, steps: int) -> Any:
    from transformers import get_scheduler

    name = "constant_with_warmup" if training.lr_scheduler == "constant" else training.lr_scheduler
    return get_scheduler(
        name,
        optimizer,
        num_warmup_steps=min(training.warmup_steps, steps),
        num_training_steps=steps,
    )


class _StepProfiler:
    """Opt-in performance trace: WFT_PROFILE_STEPS="6:9" profiles steps 6 to 8 with
    torch.profiler and writes the top operators by CPU and by CUDA time to WFT_PROFILE_OUT
    (a folder), named after the engine. Off unless the variable is set."""

    def __init__(self, engine: str) -> None:
        window = os.environ.get("WFT_PROFILE_STEPS", "")
        first, _, last = window.partition(":")
        self.window = (int(first), int(last)) if first.isdigit() and last.isdigit() else None
        self.out = Path(os.environ.get("WFT_PROFILE_OUT") or ".") / f"profile-{engine}.txt"
        self.prof: Any = None

    def before(self, step: int) -> None:
        if self.window and step == self.window[0]:
            activities = [torch.profiler.ProfilerActivity.CPU]
            if torch.cuda.is_available():
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self.prof = torch.profiler.profile(activities=activities)
            self.prof.__enter__()

    def after(self, step: int) -> None:
        if self.prof is None or not self.window or step != self.window[1] - 1:
            return
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.prof.__exit__(None, None, None)
        table = self.prof.key_averages()
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(
            table.table(sort_by="self_cpu_time_total", row_limit=40)
            + "\n\n"
            + table.table(sort_by="self_cuda_time_total", row_limit=40)
        )
        log.info("profile of steps %d-%d written to %s", *self.window, self.out)
        self.prof = None


class _LossReadback:
    """A step's loss copied to the host without blocking: on CUDA the copy lands in pinned
    memory behind an event, and `value()` waits only for that event, not for later work."""

    def __init__(self, loss: torch.Tensor) -> None:
        self.event: torch.cuda.Event | None = None
        if loss.is_cuda:
            self.host = torch.empty((), dtype=loss.dtype, pin_memory=True)
            self.host.copy_(loss.detach(), non_blocking=True)
            self.event = torch.cuda.Event()
            self.event.record()
        else:
            self.host = loss.detach()

    def value(self) -> float:
        if self.event is not None:
            self.event.synchronize()
        return float(self.host)


def grad_scaler(loaded: LoadedModel) -> torch.amp.GradScaler:
    """Loss scaling for float16 autocast (GPUs without bf16, such as the T4 or V100), where
    small gradients would underflow; with bf16 or on the CPU it is disabled and a pass-through."""
    return torch.amp.GradScaler("cuda", enabled=loaded.autocast_dtype == torch.float16)


class _OutOfMemoryInTraining(Exception):
    """One attempt's training step ran out of CUDA memory (carries torch's message, not the
    error itself: its traceback would keep the failed step's activations alive)."""

    def __init__(self, step: int, checkpointed: bool, message: str) -> None:
        super().__init__(message)
        self.step, self.checkpointed, self.message = step, checkpointed, message


def train(
    loaded: LoadedModel,
    train_ds: Any,
    training: TrainingSpec,
    collator: WhisperCollator,
    checkpoints: CheckpointStore,
    resume: Checkpoint | None,
    checkpoint_meta: Callable[[], dict[str, Any]],
    on_step: Callable[[StepReport], None],
    stop_requested: Callable[[], bool],
    eval_loss: Callable[[], float] | None = None,
) -> TrainResult:
    """Train the LoRA, from `resume` or from the start.

    `batchSize: auto` backs off during training too: a step after the probe can need more
    memory than the probe did (an 8-bit base on the H100 did). Until a checkpoint has fixed the
    batch size, the run starts over at half the size, from the same initial adapter and seed,
    as if the probe had chosen that size.
    """
    loaded.train_mode()
    state = resume.state() if resume else None
    auto = training.batch_size == "auto"
    if state:
        batch_size = int(state["batch_size"])
    else:
        batch_size = choose_batch_size(training, loaded, train_ds, collator)
    initial = (
        [p.detach().to("cpu", copy=True) for p in loaded.trainable_parameters()]
        if auto and not state
        else None
    )
    while True:
        try:
            return _train_at(
                batch_size,
                state,
                loaded,
                train_ds,
                training,
                collator,
                checkpoints,
                resume,
                checkpoint_meta,
                on_step,
                stop_requested,
                eval_loss,
            )
        except _OutOfMemoryInTraining as oom:
            # Only its fields: the error's traceback holds the attempt's frame, whose batches,
            # activations and loader workers must go before the next attempt starts.
            at_step, checkpointed, message = oom.step, oom.checkpointed, oom.message
        where = f"training step {at_step}"
        if initial is None or checkpointed or batch_size == 1:
            raise cuda_out_of_memory(batch_size, where, auto, cause=message)
        log.warning(
            "CUDA out of memory at batch size %d during %s (%s); batchSize auto starts the "
            "training over at batch size %d",
            batch_size,
            where,
            message.split(".")[0],
            batch_size // 2,
        )
        loaded.notes.append(
            f"batchSize auto: batch size {batch_size} ran out of CUDA memory at {where}; "
            f"trained at {batch_size // 2}"
        )
        with torch.no_grad():
            for param, value in zip(loaded.trainable_parameters(), initial, strict=True):
                param.copy_(value)
        if loaded.device.type == "cuda":
            torch.cuda.empty_cache()
        batch_size //= 2


def _train_at(
    batch_size: int,
    state: dict[str, Any] | None,
    loaded: LoadedModel,
    train_ds: Any,
    training: TrainingSpec,
    collator: WhisperCollator,
    checkpoints: CheckpointStore,
    resume: Checkpoint | None,
    checkpoint_meta: Callable[[], dict[str, Any]],
    on_step: Callable[[StepReport], None],
    stop_requested: Callable[[], bool],
    eval_loss: Callable[[], float] | None,
) -> TrainResult:
    """One attempt at the whole training run at a fixed batch size."""
    cuda = loaded.device.type == "cuda"
    params = loaded.trainable_parameters()
    n = len(train_ds)
    steps = total_steps(training, n, batch_size)
    accum = training.gradient_accumulation_steps
    optimizer = build_optimizer(training, params, cuda)
    scheduler = build_scheduler(training, optimizer, steps)
    scaler = grad_scaler(loaded)
    step, loss_curve, eval_losses = 0, [], []
    if state:
        load_adapter_weights(loaded.model, resume.local_dir)  # type: ignore[union-attr]
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("grad_scaler"):
            scaler.load_state_dict(state["grad_scaler"])
        restore_rng(state["rng"])
        step = int(state["step"])
        loss_curve, eval_losses = state["loss_curve"], state["eval_losses"]
    else:
        torch.manual_seed(training.seed)

    sampler = ResumableBatchSampler(n, batch_size, training.seed, step * accum, steps * accum)
    batches = iter(make_loader(as_rows(train_ds), sampler, collator, cuda))
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.monotonic()
    first_step_seconds: float | None = None
    steady_start, steady_samples = None, 0
    step_times: list[float] = []
    pending: list[tuple[StepReport, Callable[[], float]]] = []

    skipped_in_a_row, skipped_steps = 0, 0

    def flush_pending() -> None:
        nonlocal skipped_in_a_row, skipped_steps
        for report, loss_of in pending:
            loss = loss_of()
            if not math.isfinite(loss):  # before the curve, the status or any checkpoint
                skipped_in_a_row += 1
                # float16 loss scaling skipped this step's update (its gradients were not
                # finite either): the weights are untouched. Once is an overflow; in a row, the
                # model is broken. Without the scaler the update went through: stop now.
                if scaler.is_enabled() and skipped_in_a_row < MAX_NON_FINITE_IN_A_ROW:
                    skipped_steps += 1
                    log.warning(
                        "step %d: loss %s, update skipped by the loss scaler", report.step, loss
                    )
                    continue
                raise non_finite_loss(
                    f"the training loss is {loss} at step {report.step} of {steps}"
                    + (f" ({skipped_in_a_row} steps in a row)" if skipped_in_a_row > 1 else ""),
                    training.learning_rate,
                )
            skipped_in_a_row = 0
            loss_curve.append([report.step, round(loss, 6)])
            on_step(replace(report, loss=loss))
        pending.clear()

    checkpointed = False

    def save(at: int) -> None:
        nonlocal checkpointed
        saved = checkpoints.save(
            at,
            loaded.model,
            {
                "step": at,
                "batch_size": batch_size,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "grad_scaler": scaler.state_dict(),
                "rng": rng_state(),
                "loss_curve": loss_curve,
                "eval_losses": eval_losses,
            },
            {"batch_size": batch_size, "micro_batches": at * accum, **checkpoint_meta()},
        )
        # A checkpoint in S3 fixes the batch size (a retry resumes with it); a skipped one not.
        checkpointed = checkpointed or saved is not None

    profiler = _StepProfiler(loaded.engine)
    while step < steps:
        profiler.before(step + 1)
        t0 = time.monotonic()
        total = torch.zeros((), device=loaded.device)
        samples = 0
        oom: str | None = None
        try:
            for _ in range(accum):
                batch = next(batches)
                samples += batch["labels"].shape[0]
                loss = loaded.loss(batch)
                scaler.scale(loss / accum).backward()
                total += loss.detach()
            scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            scaler.step(optimizer)  # skips the step if float16 gradients overflowed
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        except torch.cuda.OutOfMemoryError as err:
            oom = str(err)
        if oom is not None:
            optimizer.zero_grad(set_to_none=True)
            raise _OutOfMemoryInTraining(step + 1, checkpointed, oom)
        step += 1
        profiler.after(step)
        readback = _LossReadback(total / accum)
        if first_step_seconds is None:
            # The first step pays for compilation and warm-up; wait for the GPU to finish it
            # so that both the figure and the steady-state clock start honestly.
            readback.value()
            now = steady_start = time.monotonic()
            first_step_seconds = now - started
        else:
            now = time.monotonic()
            steady_samples += samples
        step_times.append(round(now - t0, 4))
        rate = steady_samples / (now - steady_start) if steady_samples and steady_start else None
        report = StepReport(
            step=step,
            total_steps=steps,
            loss=float("nan"),
            learning_rate=float(scheduler.get_last_lr()[0]),
            epoch=step * accum * batch_size / n,
            step_seconds=now - t0,
            samples_per_second=rate,
            batch_size=batch_size,
        )
        # This step's loss is read when the next step's work is already queued, so the host
        # never waits for the GPU to drain (an `.item()` here would, once per step).
        flush_pending()
        pending.append((report, readback.value))
        due_eval = eval_loss is not None and training.eval_steps and step % training.eval_steps == 0
        if due_eval or stop_requested() or step % training.checkpoint_steps == 0:
            flush_pending()  # rare: evaluation and checkpoints need the curve up to this step
        if due_eval and eval_loss is not None:
            eval_losses.append([step, round(eval_loss(), 6)])
            loaded.train_mode()
        if stop_requested() and step < steps:
            save(step)
            raise Preempted(step, checkpoints.saved if checkpoints.saved is not None else 0)
        if step % training.checkpoint_steps == 0 and step < steps:
            save(step)
    flush_pending()
    if skipped_steps:
        loaded.notes.append(
            f"float16: {skipped_steps} steps had a non-finite loss; the loss scaler skipped "
            "their updates"
        )

    elapsed = time.monotonic() - started
    rate = (
        steady_samples / (time.monotonic() - steady_start)
        if steady_start and steady_samples
        else None
    )
    return TrainResult(
        steps=step,
        total_steps=steps,
        batch_size=batch_size,
        loss_curve=loss_curve,
        eval_losses=eval_losses,
        samples_per_second=rate,
        train_seconds=elapsed,
        first_step_seconds=first_step_seconds,
        peak_gpu_bytes=torch.cuda.max_memory_allocated() if cuda else None,
        resumed_from=resume.step if resume else None,
        step_seconds=step_times,
        mixed_precision=str(loaded.autocast_dtype).removeprefix("torch.")
        if loaded.autocast_dtype
        else None,
        loss_scale=scaler.get_scale() if scaler.is_enabled() else None,
    )
