"""The training loop: explicit, so that a checkpoint captures everything and resume is exact.

`TrainingRecipe` holds it: its `train` is the loop, `train_step` one step. One optimizer step
= `gradientAccumulationSteps` micro-batches. The loop checks for a stop request (SIGTERM) after
every optimizer step, saves a checkpoint and raises `Preempted`, so a retried Job resumes where
this one stopped. A NaN or infinite loss stops the run
(`NonFiniteLoss`) when it is read back, before the step reaches the curve or a checkpoint;
only under float16 loss scaling, whose scaler skips such a step's update, do isolated ones pass.

With several ranks (`distributed.Ranks`, torchrun) `batchSize` is per rank: each rank trains on
its share of a global batch of `batchSize x ranks`, one all-reduce per optimizer step sums the
gradients, the loss, the samples and the stop request, and rank 0 alone writes checkpoints. A
SIGTERM that reaches any rank stops them all after the same step.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from wft_api.conditions import Reason
from wft_api.v1alpha1 import TrainingSpec

from .batch_probe import choose_batch_size
from .batching import LABEL_PAD, ResumableBatchSampler, WhisperCollator, as_rows, make_loader
from .checkpoint import Checkpoint, CheckpointStore, load_adapter_weights, restore_rng, rng_state
from .distributed import Ranks
from .engines import LoadedModel, cuda_out_of_memory
from .errors import TrainerFailure, non_finite_loss
from .profiling import StepProfiler

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
    """Optimizer steps of the run; `batch_size` is the global one (per rank x ranks)."""
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


@dataclass
class Hooks:
    """What the training loop asks of the run around it; the defaults train on their own."""

    on_step: Callable[[StepReport], None] = lambda report: None
    stop_requested: Callable[[], bool] = lambda: False
    # Kept in each checkpoint beside the state (the baseline WER: a resumed run skips it).
    checkpoint_meta: Callable[[], dict[str, Any]] = dict
    # The eval split's loss, every `evalSteps`; None where there is no eval split.
    eval_loss: Callable[[], float] | None = None


class _Throughput:
    """Steady-state samples per second: the first step pays for compilation and warm-up, so it
    is timed apart and the steady clock starts after it."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.first_step_seconds: float | None = None
        self.steady_start: float | None = None
        self.steady_samples = 0
        self.step_seconds: list[float] = []

    def lap(self, t0: float, samples: int, readback: _LossReadback) -> float:
        """Time the step that began at `t0`; returns now."""
        if self.first_step_seconds is None:
            # Wait for the GPU to finish the first step, so that both the figure and the
            # steady-state clock start honestly.
            readback.value()
            now = self.steady_start = time.monotonic()
            self.first_step_seconds = now - self.started
        else:
            now = time.monotonic()
            self.steady_samples += samples
        self.step_seconds.append(round(now - t0, 4))
        return now

    def rate(self, now: float | None = None) -> float | None:
        if not (self.steady_start and self.steady_samples):
            return None
        return self.steady_samples / ((now or time.monotonic()) - self.steady_start)


class TrainingRecipe:
    """The LoRA training, as a torchtune recipe holds it: `train` runs it (a step is
    `train_step`), `setup` builds one attempt's optimizer, scheduler, loss scaler and sampler,
    `save_checkpoint` saves them with the adapter, `cleanup` lets them go."""

    # One attempt at a batch size, built by setup(); cleanup() drops the first five.
    optimizer: Any
    scheduler: Any
    scaler: torch.amp.GradScaler
    sampler: ResumableBatchSampler
    batches: Iterator[dict[str, torch.Tensor]]  # the DataLoader's, with its worker processes
    params: list[torch.nn.Parameter]  # the LoRA's
    batch_size: int
    steps: int  # the attempt's optimizer steps in all
    step: int  # and done
    loss_curve: list[list[float]]  # [step, loss]
    eval_losses: list[list[float]]  # [step, eval loss]
    # Steps whose loss is still on its way to the host: read one step late (`_report`).
    pending: list[tuple[StepReport, Callable[[], float]]]
    skipped_in_a_row: int  # non-finite losses, under float16 loss scaling
    skipped_steps: int
    # A checkpoint in S3 fixes the batch size (a retry resumes with it); a skipped one not.
    checkpointed: bool
    profiler: StepProfiler
    clock: _Throughput

    def __init__(
        self,
        loaded: LoadedModel,
        train_ds: Any,
        training: TrainingSpec,
        collator: WhisperCollator,
        checkpoints: CheckpointStore,
        resume: Checkpoint | None = None,
        hooks: Hooks | None = None,
        ranks: Ranks | None = None,
    ) -> None:
        self.loaded, self.train_ds, self.training = loaded, train_ds, training
        self.collator, self.checkpoints, self.resume = collator, checkpoints, resume
        self.hooks = hooks or Hooks()
        self.ranks = ranks or Ranks.single()
        self.state = resume.state() if resume else None
        self.cuda = loaded.device.type == "cuda"
        # A SIGTERM that reached any rank, as the last step's all-reduce told.
        self.stop_agreed = False

    def train(self) -> TrainResult:
        """Train the LoRA, from the checkpoint or from the start.

        `batchSize: auto` backs off during training too: a step after the probe can need more
        memory than the probe did (an 8-bit base on the H100 did). Until a checkpoint has fixed
        the batch size, the run starts over at half the size, from the same initial adapter
        and seed, as if the probe had chosen that size.
        """
        loaded, auto = self.loaded, self.training.batch_size == "auto"
        loaded.train_mode()
        ranks = self.ranks
        if self.state:
            batch_size = int(self.state["batch_size"])
            saved_world = int(self.state.get("world_size", 1))
            if saved_world != ranks.world:
                raise TrainerFailure(
                    Reason.TRAINER_ERROR,
                    f"the checkpoint at step {self.state['step']} was trained by {saved_world} "
                    f"ranks and this attempt has {ranks.world}; its batches would not line up "
                    "(spec.resources.gpus x spec.resources.nodes decides the ranks: put them back, "
                    "or change spec.retrainNonce to start over)",
                )
        else:
            # Every rank probes its own GPU; all train at what fits on every one.
            batch_size = ranks.agree_min(
                choose_batch_size(self.training, loaded, self.train_ds, self.collator)
            )
        if ranks.distributed:
            loaded.notes.append(
                f"data parallel: {ranks.world} ranks at batch size {batch_size} each, "
                f"{ranks.world * batch_size} samples per micro-batch"
            )
        initial = (
            [p.detach().to("cpu", copy=True) for p in loaded.trainable_parameters()]
            if auto and not self.state
            else None
        )
        while True:
            self.setup(batch_size)
            try:
                return self._train_steps()
            except _OutOfMemoryInTraining as oom:
                # Only its fields: the error's traceback holds the attempt's frames, whose
                # batches and activations must go before the next attempt starts.
                at_step, checkpointed, message = oom.step, oom.checkpointed, oom.message
            finally:
                self.cleanup()
            where = f"training step {at_step}"
            # Several ranks: the others are waiting in the step's all-reduce, and torchrun
            # stops them when this one fails; no rank can start over alone.
            if initial is None or checkpointed or batch_size == 1 or ranks.distributed:
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
            if self.cuda:
                torch.cuda.empty_cache()
            batch_size //= 2

    def _train_steps(self) -> TrainResult:
        """One attempt at the whole run, at the batch size `setup` fixed."""
        training, hooks = self.training, self.hooks
        while self.step < self.steps:
            self.profiler.before(self.step + 1)
            t0 = time.monotonic()
            loss, samples = self.train_step()
            self.step += 1
            self.profiler.after(self.step)
            self._report(loss, samples, t0)
            every = training.eval_steps
            due_eval = bool(hooks.eval_loss and every and self.step % every == 0)
            # Read once: a SIGTERM between two reads would checkpoint without this step's loss.
            stop = self._stop()
            if due_eval or stop or self.step % training.checkpoint_steps == 0:
                self._flush_pending()  # rare: evaluation and checkpoints need the whole curve
            if due_eval and hooks.eval_loss is not None:
                self.eval_losses.append([self.step, round(hooks.eval_loss(), 6)])
                self.loaded.train_mode()
            if stop and self.step < self.steps:
                self.save_checkpoint()
                # The others wait for rank 0's checkpoint (and hear where it is): a rank that
                # exited first would have torchrun stop the rest, rank 0's upload included.
                saved = self.ranks.from_main(self.checkpoints.saved)
                raise Preempted(self.step, saved if saved is not None else 0)
            if self.step % training.checkpoint_steps == 0 and self.step < self.steps:
                self.save_checkpoint()
        self._flush_pending()
        if self.skipped_steps:
            self.loaded.notes.append(
                f"float16: {self.skipped_steps} steps had a non-finite loss; the loss scaler "
                "skipped their updates"
            )
        return self._result()

    def _stop(self) -> bool:
        return self.stop_agreed or (not self.ranks.distributed and self.hooks.stop_requested())

    def train_step(self) -> tuple[torch.Tensor, int]:
        """One optimizer step over `gradientAccumulationSteps` micro-batches: the mean loss
        (still on the device: reading it would wait for the GPU) and the samples seen (by all
        ranks)."""
        accum = self.training.gradient_accumulation_steps
        total = torch.zeros((), device=self.loaded.device)
        samples = 0
        oom: str | None = None
        try:
            if self.ranks.distributed:
                total, samples = self._distributed_micro_batches(accum)
            else:
                for _ in range(accum):
                    batch = next(self.batches)
                    samples += batch["labels"].shape[0]
                    loss = self.loaded.loss(batch)
                    self.scaler.scale(loss / accum).backward()
                    total += loss.detach()
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
            torch.nn.utils.clip_grad_norm_(self.params, 1.0)
            self.scaler.step(self.optimizer)  # skips the step if float16 gradients overflowed
            self.scaler.update()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        except torch.cuda.OutOfMemoryError as err:
            oom = str(err)
        if oom is not None:
            self.optimizer.zero_grad(set_to_none=True)
            raise _OutOfMemoryInTraining(self.step + 1, self.checkpointed, oom)
        return total / accum, samples

    def _distributed_micro_batches(self, accum: int) -> tuple[torch.Tensor, int]:
        """This rank's micro-batches of one optimizer step, then the one all-reduce.

        Whisper's loss is the mean over a batch's label tokens. One process at the global batch
        takes the mean over all of them; here each rank's mean is weighted by its share of the
        global batch's tokens, so that the summed gradients (and the summed loss) are exactly
        that mean's, whatever the label lengths. The token counts are summed first, in an
        all-reduce of their own: one integer per micro-batch, before any forward.
        """
        device, ranks = self.loaded.device, self.ranks
        batches = [next(self.batches) for _ in range(accum)]
        tokens = torch.tensor(
            [int((b["labels"] != LABEL_PAD).sum()) for b in batches], dtype=torch.float32
        )
        global_tokens = ranks.sum(tokens.to(device)).clamp(min=1)
        total = torch.zeros((), device=device)
        samples = 0
        for i, batch in enumerate(batches):
            samples += batch["labels"].shape[0]
            if not batch["labels"].shape[0]:
                continue  # an empty share of a short last batch: no tokens, no gradient
            share = tokens[i].to(device) / global_tokens[i]
            loss = self.loaded.loss(batch) * share
            self.scaler.scale(loss / accum).backward()
            total += loss.detach()
        stop = torch.tensor(float(self.hooks.stop_requested()))
        total, summed_samples, stop = ranks.sum_step(
            self.params, [total, torch.tensor(float(samples)), stop]
        )
        self.stop_agreed = bool(stop > 0)
        return total, int(summed_samples)

    def setup(self, batch_size: int) -> None:
        """One attempt's optimizer, scheduler, loss scaler and sampler at `batch_size`: in the
        checkpoint's state when resuming, else fresh from the seed."""
        training, accum = self.training, self.training.gradient_accumulation_steps
        n, ranks = len(self.train_ds), self.ranks
        self.batch_size = batch_size
        self.steps = total_steps(training, n, batch_size * ranks.world)
        self.params = self.loaded.trainable_parameters()
        self.optimizer = build_optimizer(training, self.params, self.cuda)
        self.scheduler = build_scheduler(training, self.optimizer, self.steps)
        self.scaler = grad_scaler(self.loaded)
        self.step, self.loss_curve, self.eval_losses = 0, [], []
        if self.state:
            load_adapter_weights(self.loaded.model, self.resume.local_dir)  # type: ignore[union-attr]
            self.optimizer.load_state_dict(self.state["optimizer"])
            self.scheduler.load_state_dict(self.state["scheduler"])
            if self.state.get("grad_scaler"):
                self.scaler.load_state_dict(self.state["grad_scaler"])
            restore_rng(self.state["rng"])
            self.step = int(self.state["step"])
            self.loss_curve, self.eval_losses = self.state["loss_curve"], self.state["eval_losses"]
        else:
            torch.manual_seed(training.seed)
        self.sampler = ResumableBatchSampler(
            n,
            batch_size,
            training.seed,
            self.step * accum,
            self.steps * accum,
            ranks.rank,
            ranks.world,
        )
        self.batches = iter(
            make_loader(
                as_rows(self.train_ds),
                self.sampler,
                self.collator,
                self.cuda,
                ranks_on_node=ranks.local_world,  # the node's CPUs are shared by its ranks
            )
        )
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        self.pending = []
        self.skipped_in_a_row, self.skipped_steps = 0, 0
        self.checkpointed = False
        self.profiler = StepProfiler(self.loaded.engine)
        self.clock = _Throughput()

    def save_checkpoint(self) -> None:
        """The adapter and everything resuming at this step needs (the curve included). With
        several ranks rank 0 writes it: the others hold the same weights and state."""
        if not self.ranks.is_main:
            return
        accum = self.training.gradient_accumulation_steps
        saved = self.checkpoints.save(
            self.step,
            self.loaded.model,
            {
                "step": self.step,
                "batch_size": self.batch_size,
                "world_size": self.ranks.world,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "grad_scaler": self.scaler.state_dict(),
                "rng": rng_state(),
                "loss_curve": self.loss_curve,
                "eval_losses": self.eval_losses,
            },
            {
                "batch_size": self.batch_size,
                "micro_batches": self.step * accum,
                **self.hooks.checkpoint_meta(),
            },
        )
        self.checkpointed = self.checkpointed or saved is not None

    def cleanup(self) -> None:
        """Let go of what `setup` built before the next attempt or the evaluation after it:
        the loader's worker processes end and the optimizer's state leaves the GPU."""
        for built in ("batches", "sampler", "optimizer", "scheduler", "scaler"):
            vars(self).pop(built, None)

    def _report(self, loss: torch.Tensor, samples: int, t0: float) -> None:
        readback = _LossReadback(loss)
        now = self.clock.lap(t0, samples, readback)
        report = StepReport(
            step=self.step,
            total_steps=self.steps,
            loss=float("nan"),
            learning_rate=float(self.scheduler.get_last_lr()[0]),
            epoch=self.step
            * self.training.gradient_accumulation_steps
            * self.batch_size
            * self.ranks.world
            / len(self.train_ds),
            step_seconds=now - t0,
            samples_per_second=self.clock.rate(now),
            batch_size=self.batch_size,
        )
        # This step's loss is read when the next step's work is already queued, so the host
        # never waits for the GPU to drain (an `.item()` here would, once per step).
        self._flush_pending()
        self.pending.append((report, readback.value))

    def _flush_pending(self) -> None:
        """Read the pending losses back: onto the curve and to `on_step`, or, not finite, stop
        the run before the step reaches the curve, the status or any checkpoint."""
        for report, loss_of in self.pending:
            loss = loss_of()
            if not math.isfinite(loss):
                self.skipped_in_a_row += 1
                # float16 loss scaling skipped this step's update (its gradients were not
                # finite either): the weights are untouched. Once is an overflow; in a row, the
                # model is broken. Without the scaler the update went through: stop now.
                if self.scaler.is_enabled() and self.skipped_in_a_row < MAX_NON_FINITE_IN_A_ROW:
                    self.skipped_steps += 1
                    log.warning(
                        "step %d: loss %s, update skipped by the loss scaler", report.step, loss
                    )
                    continue
                in_a_row = self.skipped_in_a_row
                raise non_finite_loss(
                    f"the training loss is {loss} at step {report.step} of {self.steps}"
                    + (f" ({in_a_row} steps in a row)" if in_a_row > 1 else ""),
                    self.training.learning_rate,
                )
            self.skipped_in_a_row = 0
            self.loss_curve.append([report.step, round(loss, 6)])
            self.hooks.on_step(replace(report, loss=loss))
        self.pending.clear()

    def _result(self) -> TrainResult:
        elapsed = time.monotonic() - self.clock.started
        dtype = self.loaded.autocast_dtype
        return TrainResult(
            steps=self.step,
            total_steps=self.steps,
            batch_size=self.batch_size,
            loss_curve=self.loss_curve,
            eval_losses=self.eval_losses,
            samples_per_second=self.clock.rate(),
            train_seconds=elapsed,
            first_step_seconds=self.clock.first_step_seconds,
            peak_gpu_bytes=torch.cuda.max_memory_allocated() if self.cuda else None,
            resumed_from=self.resume.step if self.resume else None,
            step_seconds=self.clock.step_seconds,
            mixed_precision=str(dtype).removeprefix("torch.") if dtype else None,
            loss_scale=self.scaler.get_scale() if self.scaler.is_enabled() else None,
        )
