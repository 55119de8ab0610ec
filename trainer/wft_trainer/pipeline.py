"""One training run, top to bottom: prepare -> load -> baseline eval -> train -> final eval ->
save and upload. Every stage is timed; the reporter hears about each one. The training stage
is `loop.TrainingRecipe` (one step: its `train_step`); what the run found is
`results.RunMetrics`, written as metrics.json.

The config is read once by the caller (`python -m wft_trainer` or `wft train`) and passed down as
one typed object. A resumed attempt (same resource uid and generation, a checkpoint in S3 made by
the same spec hash) skips the baseline evaluation (its result is in the checkpoint) and continues
training where it stopped. An attempt whose run is finished already (`_SUCCESS` of this run)
succeeds at once and trains nothing.

With several ranks (torchrun, `distributed.Ranks`) rank 0 alone prepares the data,
evaluates, reports and publishes; each node's first rank resolves the base model; the others
wait for rank 0's data (a broadcast), read it in their node's work dir (another node's leader
downloads it first: `shared_data`), resume from the same checkpoint, train their share of each
batch and end once rank 0 has published (so that the pods of several nodes end together).

Nothing is published unless every loss was a number: a NaN or infinite training or eval loss,
or an adapter tensor that is not finite, fails the run with `NonFiniteLoss` before the upload.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import math
import resource
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from wft_api.conditions import Reason
from wft_api.identity import spec_hash
from wft_api.v1alpha1 import TrainerConfig

from . import engines, shared_data
from .baseline_cache import BaselineCache, baseline_once
from .batching import WhisperCollator
from .checkpoint import CheckpointStore
from .compile_cache import CompileCache
from .data.report import DataStageFailure
from .distributed import Ranks
from .errors import TrainerFailure, non_finite_loss
from .evaluate import evaluate
from .loop import Hooks, Preempted, StepReport, TrainingRecipe, TrainResult
from .models.ctranslate2_export import require_exporter
from .output import SUCCESS, finished_run, publish, write_adapter, write_exports
from .results import BaseModelOrigin, EvalResult, RunMetrics
from .status import Reporter
from .timing import process_started

log = logging.getLogger(__name__)

CPU_EVAL_BATCH = 8
GPU_EVAL_BATCH = 16


class StopRequest:
    """SIGTERM (Kubernetes preemption, node drain): inside the training loop, finish the step,
    checkpoint and stop; anywhere else, stop at once (nothing worth saving yet)."""

    def __init__(self) -> None:
        self.requested = False
        self.deferred = False

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        if not self.deferred:
            raise Preempted(0)

    @contextlib.contextmanager
    def deferring(self) -> Iterator[None]:
        self.deferred = True
        try:
            yield
        finally:
            self.deferred = False


@dataclass
class RunResult:
    run_uri: str
    # None only for a run finished earlier whose metrics.json could not be read.
    metrics: RunMetrics | None = None
    # True: an earlier attempt of this same run had finished it; nothing was trained again.
    already_finished: bool = False


class _Timings:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.start = time.monotonic()
        began = process_started()
        if began is not None:  # a Job: its interpreter's start and imports count too
            self.seconds["startup"] = round(self.start - began, 3)
            self.start = began

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = round(time.monotonic() - t0, 3)


def _finite_eval(result: EvalResult, when: str, learning_rate: float) -> EvalResult:
    """An eval loss that is NaN or infinite ends the run: the model computes no numbers."""
    if result.eval_loss is not None and not math.isfinite(result.eval_loss):
        raise non_finite_loss(f"the eval loss {when} is {result.eval_loss}", learning_rate)
    return result


def _require_finite_weights(model: Any, learning_rate: float) -> None:
    """The last guard before publishing: every trainable tensor holds numbers."""
    bad = [
        name
        for name, param in model.named_parameters()
        if param.requires_grad and not bool(torch.isfinite(param).all())
    ]
    if bad:
        raise non_finite_loss(
            f"{len(bad)} adapter tensors hold NaN or infinite values (such as {bad[0]})",
            learning_rate,
        )


def _data_failure(
    err: DataStageFailure, reporter: Reporter, store: Any, run_uri: str
) -> TrainerFailure:
    """A failed data stage still reports: the dataset summary goes to the status, report.json
    (every skipped file, and why the stage failed) to the run folder; the message says where."""
    reporter.dataset(err.report.to_status())
    where = run_uri + "report.json"
    try:
        store.put_bytes(where, json.dumps(err.report.to_json(), indent=2).encode())
    except TrainerFailure as upload:
        log.warning("could not write %s: %s", where, upload.message)
        return TrainerFailure(err.reason, err.message)
    return TrainerFailure(err.reason, f"{err.message} (every skipped file: {where})")


def run(
    config: TrainerConfig,
    reporter: Reporter,
    work_dir: Path,
    stop: StopRequest | None = None,
    ranks: Ranks | None = None,
) -> RunResult:
    """The whole run, in the order of the module docstring (`_Run` holds what stages share)."""
    return _Run(config, reporter, work_dir, stop or StopRequest(), ranks or Ranks.single()).run()


class _Run:
    """One run's stages, called in order by `run`; what they hand on lives on self: `run` sets
    compiled (the compile cache), `prepare` base, baselines (the baseline cache), processor and
    data, `load` the loaded model, cuda, eval_batch, language, task, checkpoints and resume,
    `evaluate_baseline` and `evaluate_final` their EvalResults, `train` start_of_train."""

    def __init__(
        self,
        config: TrainerConfig,
        reporter: Reporter,
        work_dir: Path,
        stop: StopRequest,
        ranks: Ranks,
    ) -> None:
        from .storage import S3Store

        self.config, self.spec, self.training = config, config.spec, config.spec.training
        self.reporter, self.work_dir, self.stop = reporter, work_dir, stop
        self.ranks = ranks
        self.timings = _Timings()
        self.run_uri = config.run_output_uri
        self.store = S3Store.from_spec(self.spec.storage)

    def run(self) -> RunResult:
        spec, timings = self.spec, self.timings
        if finished_run(self.store, self.config) is not None:
            return _already_finished(self.store, self.run_uri, self.reporter)
        # Before Unsloth is imported and anything compiles: an earlier Job's kernels, if any
        # (rank 0's: the folders are the node's, one writer keeps them whole).
        self.compiled = (
            CompileCache.for_run(spec.dataset.cache_uri, self.store, self.work_dir)
            if self.ranks.is_main
            else None
        )
        if self.compiled:
            with timings.stage("compileCacheRestore"):
                self.compiled.restore()
        engine = engines.preload(spec, self.ranks.world)
        # Cheap checks first: a wrong dataset URI or missing credentials fail in seconds, not
        # after a multi-gigabyte model download.
        self.store.require_objects(spec.dataset.uri, "spec.dataset.uri")
        if spec.output.ctranslate2:
            require_exporter()
        self.prepare(engine)
        self.load()
        if not self.ranks.is_main:
            self.train()
            # Alive until rank 0 has evaluated and published: a pod of an Indexed Job that
            # succeeded is never started again, so a node that ended here would leave a failed
            # rank 0's replacement waiting at the rendezvous for it. Should rank 0 fail instead,
            # this wait fails with it and the whole run is retried together.
            self.ranks.from_main(None)
            return RunResult(run_uri=self.run_uri)
        self.evaluate_baseline()
        result = self.train()
        self.evaluate_final()
        # Everything that compiles (training, evaluation) has compiled: keep it for the next Job.
        if self.compiled:
            with timings.stage("compileCacheSave"):
                self.compiled.save()
        published = self.publish(result)
        self.ranks.from_main(None)  # the other ranks may end now
        return published

    def prepare(self, engine: str) -> None:
        """1. Data: S3 audio -> 16 kHz -> normalized text -> log-mel features (memory-mapped
        Arrow), and the base model's files and processor. The model's load begins as soon as
        its files are here and runs beside the data stage (engines.Loading).

        With several ranks rank 0 prepares the data first, each node's leader resolves the
        base model meanwhile; the others wait for rank 0 (a broadcast of where its data is),
        then their node leader (who downloads rank 0's data on another node), and read the
        base model and exactly rank 0's data from their node's work dir: nothing is listed or
        computed again."""
        from .data import fetch_prepared, prepare
        from .models.source import load_processor, require_hub, resolve_base_model

        spec, ranks = self.spec, self.ranks
        data_config = shared_data.data_config(self.config, ranks)
        fingerprint, shared_uri = "", None  # where rank 0's data is (told to the others)
        self.reporter.stage("Preparing", f"preparing {spec.dataset.uri}")
        with self.timings.stage("prepare"):
            if ranks.is_node_leader:
                self.base = resolve_base_model(spec, self.store, self.work_dir / "models")
            if not ranks.is_main:
                # Rank 0's data is prepared: its fingerprint, and its copy in S3 across nodes.
                fingerprint, shared_uri = ranks.from_main((fingerprint, shared_uri))
            if not ranks.is_node_leader:
                self.base = ranks.from_node_leader(None)  # type: ignore[assignment]
            # Hashes the base model's files while the data stage runs: a cached baseline's key
            # (rank 0 alone evaluates).
            self.baselines = (
                BaselineCache.for_run(spec.dataset.cache_uri, self.store, self.base.path)
                if ranks.is_main
                else None
            )
            require_hub(self.base, spec)
            self.processor = load_processor(self.base, spec)
            # After the processor and datasets (and with them fsspec and huggingface_hub's file
            # system, which peft's import also reaches): the load's thread then imports only
            # modules the data stage does not, so no two threads import the same package.
            import datasets  # noqa: F401

            self.loading = engines.Loading(
                spec, self.base.path, engine, english_only=self.base.english_only
            )
            data_dir = self.work_dir / "data"
            try:
                self.data = (
                    prepare(data_config, self.processor, data_dir, self.store)
                    if ranks.is_main
                    else fetch_prepared(data_dir, fingerprint, shared_uri, self.store)
                )
            except DataStageFailure as err:
                self.loading.abandon()
                raise _data_failure(err, self.reporter, self.store, self.run_uri) from None
            except BaseException:
                self.loading.abandon()
                raise
            if ranks.is_main:
                shared_uri = (
                    shared_data.share(self.data, data_config, self.store)
                    if ranks.nodes > 1
                    else None
                )
                ranks.from_main((self.data.path.name, shared_uri))  # the others go on
            if ranks.is_node_leader:
                ranks.from_node_leader(self.base)  # and on this node's disk
        self.reporter.dataset(self.data.report.to_status())

    def load(self) -> None:
        """2. The base model, quantized, with fresh LoRA (B = 0: it still computes the base
        model), and the checkpoint to resume from, if any. Its seconds are what is left of the
        load once the data stage is done."""
        spec, base, ranks = self.spec, self.base, self.ranks
        self.language, self.task = base.prompt(spec)
        with self.timings.stage("load"):
            longest_label = max((len(x) for x in self.data.train["labels"]), default=1)
            self.loaded = self.loading.result(label_tokens=longest_label)
        self.cuda = self.loaded.device.type == "cuda"
        batch_size = self.training.batch_size
        self.eval_batch = (
            batch_size
            if isinstance(batch_size, int)
            else (GPU_EVAL_BATCH if self.cuda else CPU_EVAL_BATCH)
        )
        self.checkpoints = CheckpointStore(
            self.store,
            self.run_uri,
            # Every rank downloads the checkpoint it resumes from; rank 0 alone saves.
            self.work_dir / ("checkpoints" if ranks.is_main else f"checkpoints-rank-{ranks.rank}"),
            spec_hash(spec),
            # A skipped checkpoint is said where the user looks: the status message.
            on_warning=lambda message: self.reporter.stage("Training", message),
        )
        self.resume = self.checkpoints.latest()

    def evaluate_baseline(self) -> None:
        """3. Baseline WER, once per generation: a resumed attempt finds it in the checkpoint."""
        data, resume = self.data, self.resume
        if resume and "baseline" in resume.meta:
            try:
                self.baseline = EvalResult.model_validate(resume.meta["baseline"])
                general = resume.meta.get("baselineGeneral")
                self.baseline_general = EvalResult.model_validate(general) if general else None
                return
            except ValidationError as err:  # a checkpoint another trainer wrote: evaluate
                log.warning("the checkpoint's baseline does not read (%s); evaluating", err)
        self.reporter.stage("Evaluating", "word error rate of the base model")
        loaded, base = self.loaded, self.base
        with self.timings.stage("baselineEval"):
            self.baseline, self.baseline_general = baseline_once(
                self.baselines,
                lambda: (
                    self._word_error_rates(data.eval, "of the base model"),
                    self._word_error_rates(data.general, "of the base model on generalEvalManifest")
                    if data.general
                    else None,
                ),
                splits=[data.eval, data.general],
                engine=loaded.engine,
                quantization=loaded.quantization,
                dtypes=[str(loaded.compute_dtype), str(loaded.feature_dtype)],
                eval_batch=self.eval_batch,
                prompt=[self.language, self.task, base.english_only],
                # Unsloth runs its patched LoRA kernels even while the adapter adds nothing.
                lora=self.spec.lora.model_dump(mode="json"),
            )
        self.reporter.metrics(
            baseline_wer=self.baseline.wer,
            eval_loss=self.baseline.eval_loss,
            baseline_general_wer=self.baseline_general.wer if self.baseline_general else None,
        )

    def train(self) -> TrainResult:
        """4. Training, checkpointed; SIGTERM checkpoints and exits for the Job's retry."""
        loaded, resume, data = self.loaded, self.resume, self.data
        self.reporter.stage(
            "Training",
            f"resuming at step {resume.step}" if resume else f"training with {loaded.engine}",
        )
        self.start_of_train = time.monotonic() - self.timings.start
        hooks = Hooks(
            on_step=self._on_step,
            stop_requested=lambda: self.stop.requested,
            checkpoint_meta=self._checkpoint_meta,
            eval_loss=(
                self._eval_loss
                if data.eval is not None and len(data.eval) and self.ranks.is_main
                else None
            ),
        )
        collator = WhisperCollator(loaded.model.config.decoder_start_token_id, bucketed=self.cuda)
        recipe = TrainingRecipe(
            loaded,
            data.train,
            self.training,
            collator,
            self.checkpoints,
            resume,
            hooks,
            self.ranks,
        )
        with self.timings.stage("train"), self.stop.deferring():
            return recipe.train()

    def evaluate_final(self) -> None:
        """5. Fine-tuned WER."""
        self.reporter.stage("Evaluating", "word error rate of the fine-tuned model")
        with self.timings.stage("finalEval"):
            self.final = self._word_error_rates(self.data.eval, "of the fine-tuned model")
            # Only beside a baseline: a resumed run from before generalEvalManifest has none.
            self.final_general = (
                self._word_error_rates(
                    self.data.general, "of the fine-tuned model on generalEvalManifest"
                )
                if self.baseline_general
                else None
            )
        self.reporter.metrics(
            wer=self.final.wer,
            eval_loss=self.final.eval_loss,
            general_wer=self.final_general.wer if self.final_general else None,
        )

    def publish(self, result: TrainResult) -> RunResult:
        """6. Adapter, processor, metrics, report, card (and the exports asked for), then
        _SUCCESS."""
        spec, run_uri = self.spec, self.run_uri
        self.reporter.stage("Uploading", f"writing results to {run_uri}")
        staging = self.work_dir / "output"
        with self.timings.stage("save"):
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            loaded, model_dir = self.loaded, self.base.path
            _require_finite_weights(loaded.model, self.training.learning_rate)
            write_adapter(loaded.model, self.processor, spec.base_model, model_dir, staging)
            engine, quantization, notes = loaded.engine, loaded.quantization, loaded.notes
            checkpointing = loaded.checkpointing.as_metrics()
            if spec.output.merged_model or spec.output.ctranslate2:
                del loaded, self.loaded  # the merged exports need the memory
                gc.collect()
                if self.cuda:
                    torch.cuda.empty_cache()
            exports = write_exports(
                spec.output, model_dir, self.processor, staging, self.work_dir / "export"
            )
        compiled = self.compiled
        metrics = RunMetrics(
            engine=engine,
            quantization=quantization,
            gradient_checkpointing=checkpointing,
            device=torch.cuda.get_device_name() if self.cuda else "cpu",
            batch_size=result.batch_size,
            steps=result.steps,
            total_steps=result.total_steps,
            resumed_from=result.resumed_from,
            base_model=BaseModelOrigin(source=spec.base_model, loaded_as=self.base.origin),
            english_only=self.base.english_only,
            baseline=self.baseline,
            final=self.final,
            baseline_general=self.baseline_general,
            final_general=self.final_general,
            loss_curve=result.loss_curve,
            eval_losses=result.eval_losses,
            samples_per_second=result.samples_per_second,
            mixed_precision=result.mixed_precision,
            loss_scale=result.loss_scale,
            step_seconds=result.step_seconds,
            peak_gpu_memory_bytes=result.peak_gpu_bytes,
            host_peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            host_peak_rss_worker_bytes=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            * 1024,
            first_step_seconds=result.first_step_seconds,
            time_to_first_step_seconds=(
                round(self.start_of_train + result.first_step_seconds, 3)
                if result.first_step_seconds is not None
                else None
            ),
            train_seconds=result.train_seconds,
            seconds_per_stage=self.timings.seconds,
            exports=exports,
            dataset=self.data.report.to_status(),
            compile_cache=compiled.as_metrics() if compiled else None,
            notes=notes
            + (compiled.notes if compiled else [])
            + (self.baselines.notes if self.baselines else []),
        )
        if not publish(
            self.store, run_uri, staging, self.config, metrics, self.data.report.to_json()
        ):
            return _already_finished(self.store, run_uri, self.reporter)
        self.checkpoints.clear()  # after _SUCCESS: until then they are what a retry resumes from
        shared_data.forget(self.config, self.ranks, self.store)
        self.reporter.finished(True, Reason.COMPLETED, f"adapter written to {run_uri}", run_uri)
        return RunResult(run_uri=run_uri, metrics=metrics)

    def _word_error_rates(self, split: Any, when: str) -> EvalResult:
        """Batched generate over a split: WER raw and normalized, and eval loss."""
        result = evaluate(
            self.loaded,
            split,
            self.processor,
            self.language,
            self.task,
            self.eval_batch,
            on_batch=self.reporter.eval_progress,
        )
        return _finite_eval(result, when, self.training.learning_rate)

    def _on_step(self, r: StepReport) -> None:
        self.reporter.progress(r.step, r.total_steps, r.loss, r.epoch, r.step_seconds)
        if r.samples_per_second:
            self.reporter.metrics(
                samples_per_second=round(r.samples_per_second, 3), batch_size=r.batch_size
            )

    def _eval_loss(self) -> float:
        res = evaluate(
            self.loaded,
            self.data.eval,
            self.processor,
            self.language,
            self.task,
            self.eval_batch,
            generate=False,
        )
        _finite_eval(res, "during training", self.training.learning_rate)
        self.reporter.metrics(eval_loss=res.eval_loss)
        return res.eval_loss if res.eval_loss is not None else float("nan")

    def _checkpoint_meta(self) -> dict[str, Any]:
        """The baseline rides in each checkpoint: a resumed attempt does not evaluate again."""
        general = self.baseline_general
        return {
            "baseline": self.baseline.model_dump(by_alias=True),
            "baselineGeneral": general.model_dump(by_alias=True) if general else None,
        }


def _already_finished(store: Any, run_uri: str, reporter: Reporter) -> RunResult:
    """This run's folder holds its finished results (a Job re-created after its TTL removed the
    finished one, or a pod that died after writing them): succeed again, train nothing."""
    metrics: RunMetrics | None
    try:
        metrics = RunMetrics.model_validate_json(store.read_bytes(run_uri + "metrics.json"))
    except (TrainerFailure, ValueError):  # pydantic's ValidationError is a ValueError
        metrics = None
    reporter.metrics(
        wer=metrics.final.wer if metrics else None,
        baseline_wer=metrics.baseline.wer if metrics else None,
    )
    message = (
        f"adapter written to {run_uri} (an earlier attempt of this run finished it, "
        f"{SUCCESS} is there: nothing was trained again)"
    )
    log.info("%s", message)
    reporter.finished(True, Reason.COMPLETED, message, run_uri)
    return RunResult(run_uri=run_uri, metrics=metrics, already_finished=True)
