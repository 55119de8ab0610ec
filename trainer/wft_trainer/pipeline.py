"""One training run, top to bottom: prepare -> load -> baseline eval -> train -> final eval ->
save and upload. Every stage is timed; the reporter hears about each one.

The config is read once by the caller (`python -m wft_trainer` or `wft train`) and passed down as
one typed object. A resumed attempt (same resource uid and generation, a checkpoint in S3 made by
the same spec hash) skips the baseline evaluation (its result is in the checkpoint) and continues
training where it stopped. An attempt whose run is finished already (`_SUCCESS` of this run)
succeeds at once and trains nothing.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from wft_api.conditions import Reason
from wft_api.identity import spec_hash
from wft_api.v1alpha1 import TrainerConfig

from . import engines
from .baseline_cache import BaselineCache, baseline_once
from .batching import WhisperCollator
from .checkpoint import CheckpointStore
from .compile_cache import CompileCache
from .data.report import DataStageFailure
from .errors import TrainerFailure, non_finite_loss
from .evaluate import EvalResult, evaluate
from .loop import Preempted, StepReport, train
from .models.ctranslate2_export import require_exporter
from .output import SUCCESS, finished_run, publish, write_adapter, write_exports
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
    metrics: dict[str, Any] = field(default_factory=dict)
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


def _eval_dict(result: EvalResult) -> dict[str, Any]:
    return {
        "wer": result.wer,
        "werNormalized": result.wer_normalized,
        "evalLoss": result.eval_loss,
        "samples": result.samples,
        "examples": result.examples,
    }


def run(
    config: TrainerConfig, reporter: Reporter, work_dir: Path, stop: StopRequest | None = None
) -> RunResult:
    from .data import prepare
    from .models.source import load_processor, require_hub, resolve_base_model
    from .storage import S3Store

    spec, training = config.spec, config.spec.training
    stop = stop or StopRequest()
    timings = _Timings()
    run_uri = config.run_output_uri
    store = S3Store.from_spec(spec.storage)
    if finished_run(store, config) is not None:
        return _already_finished(store, run_uri, reporter)
    # Before Unsloth is imported and anything compiles: an earlier Job's kernels, if any.
    compiled = CompileCache.for_run(spec.dataset.cache_uri, store, work_dir)
    if compiled:
        with timings.stage("compileCacheRestore"):
            compiled.restore()
    engine = engines.preload(spec)
    # Cheap checks first: a wrong dataset URI or missing credentials fail in seconds, not after
    # a multi-gigabyte model download.
    store.require_objects(spec.dataset.uri, "spec.dataset.uri")
    if spec.output.ctranslate2:
        require_exporter()

    # 1. Data: S3 audio -> 16 kHz -> normalized text -> log-mel features (memory-mapped Arrow).
    reporter.stage("Preparing", f"preparing {spec.dataset.uri}")
    with timings.stage("prepare"):
        base = resolve_base_model(spec, store, work_dir / "models")
        # Hashes the base model's files while the data stage runs: the key of a cached baseline.
        baselines = BaselineCache.for_run(spec.dataset.cache_uri, store, base.path)
        require_hub(base, spec)
        processor = load_processor(base, spec)
        try:
            data = prepare(config, processor, work_dir / "data", store)
        except DataStageFailure as err:
            raise _data_failure(err, reporter, store, run_uri) from None
    reporter.dataset(data.report.to_status())
    model_dir = base.path
    language, task = base.prompt(spec)

    # 2. The base model, quantized, with fresh LoRA (B = 0: it still computes the base model).
    with timings.stage("load"):
        longest_label = max((len(x) for x in data.train["labels"]), default=1)
        loaded = engines.load(
            spec, model_dir, engine, english_only=base.english_only, label_tokens=longest_label
        )
    cuda = loaded.device.type == "cuda"
    eval_batch = (
        training.batch_size
        if isinstance(training.batch_size, int)
        else (GPU_EVAL_BATCH if cuda else CPU_EVAL_BATCH)
    )
    checkpoints = CheckpointStore(
        store,
        run_uri,
        work_dir / "checkpoints",
        spec_hash(spec),
        # A skipped checkpoint is said where the user looks: the status message.
        on_warning=lambda message: reporter.stage("Training", message),
    )
    resume = checkpoints.latest()

    def word_error_rates(split: Any, when: str) -> dict[str, Any]:
        """Batched generate over a split: WER raw and normalized, and eval loss."""
        result = evaluate(
            loaded, split, processor, language, task, eval_batch, on_batch=reporter.eval_progress
        )
        return _eval_dict(_finite_eval(result, when, training.learning_rate))

    # 3. Baseline WER, once per generation: a resumed attempt finds it in the checkpoint.
    if resume and "baseline" in resume.meta:
        baseline = resume.meta["baseline"]
        baseline_general = resume.meta.get("baselineGeneral")
    else:
        reporter.stage("Evaluating", "word error rate of the base model")
        with timings.stage("baselineEval"):
            baseline, baseline_general = baseline_once(
                baselines,
                lambda: (
                    word_error_rates(data.eval, "of the base model"),
                    word_error_rates(data.general, "of the base model on generalEvalManifest")
                    if data.general
                    else None,
                ),
                splits=[data.eval, data.general],
                engine=loaded.engine,
                quantization=loaded.quantization,
                dtypes=[str(loaded.compute_dtype), str(loaded.feature_dtype)],
                eval_batch=eval_batch,
                prompt=[language, task, base.english_only],
            )
        reporter.metrics(
            baseline_wer=baseline["wer"],
            eval_loss=baseline["evalLoss"],
            baseline_general_wer=baseline_general["wer"] if baseline_general else None,
        )

    # 4. Training, checkpointed; SIGTERM checkpoints and exits for the Job's retry.
    reporter.stage(
        "Training",
        f"resuming at step {resume.step}" if resume else f"training with {loaded.engine}",
    )
    start_of_train = time.monotonic() - timings.start

    def on_step(r: StepReport) -> None:
        reporter.progress(r.step, r.total_steps, r.loss, r.epoch, r.step_seconds)
        if r.samples_per_second:
            reporter.metrics(
                samples_per_second=round(r.samples_per_second, 3), batch_size=r.batch_size
            )

    def eval_loss() -> float:
        res = evaluate(loaded, data.eval, processor, language, task, eval_batch, generate=False)
        _finite_eval(res, "during training", training.learning_rate)
        reporter.metrics(eval_loss=res.eval_loss)
        return res.eval_loss if res.eval_loss is not None else float("nan")

    collator = WhisperCollator(loaded.model.config.decoder_start_token_id, bucketed=cuda)
    with timings.stage("train"), stop.deferring():
        result = train(
            loaded,
            data.train,
            training,
            collator,
            checkpoints,
            resume,
            checkpoint_meta=lambda: {"baseline": baseline, "baselineGeneral": baseline_general},
            on_step=on_step,
            stop_requested=lambda: stop.requested,
            eval_loss=eval_loss if data.eval is not None and len(data.eval) else None,
        )

    # 5. Fine-tuned WER.
    reporter.stage("Evaluating", "word error rate of the fine-tuned model")
    with timings.stage("finalEval"):
        final = word_error_rates(data.eval, "of the fine-tuned model")
        # Only beside a baseline: a resumed run from before generalEvalManifest has none.
        final_general = (
            word_error_rates(data.general, "of the fine-tuned model on generalEvalManifest")
            if baseline_general
            else None
        )
    reporter.metrics(
        wer=final["wer"],
        eval_loss=final["evalLoss"],
        general_wer=final_general["wer"] if final_general else None,
    )

    # Everything that compiles (training, evaluation) has compiled: keep it for the next Job.
    if compiled:
        with timings.stage("compileCacheSave"):
            compiled.save()

    # 6. Adapter, processor, metrics, report, card (and the exports asked for), then _SUCCESS.
    reporter.stage("Uploading", f"writing results to {run_uri}")
    staging = work_dir / "output"
    with timings.stage("save"):
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        _require_finite_weights(loaded.model, training.learning_rate)
        write_adapter(loaded.model, processor, spec.base_model, model_dir, staging)
        engine, quantization, notes = loaded.engine, loaded.quantization, loaded.notes
        checkpointing = loaded.checkpointing.as_metrics()
        if spec.output.merged_model or spec.output.ctranslate2:
            del loaded  # the merged exports need the memory
            gc.collect()
            if cuda:
                torch.cuda.empty_cache()
        exports = write_exports(spec.output, model_dir, processor, staging, work_dir / "export")
    metrics = {
        "engine": engine,
        "quantization": quantization,
        "gradientCheckpointing": checkpointing,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "batchSize": result.batch_size,
        "steps": result.steps,
        "totalSteps": result.total_steps,
        "resumedFrom": result.resumed_from,
        "baseModel": {"source": spec.base_model, "loadedAs": base.origin},
        "englishOnly": base.english_only,
        "baseline": baseline,
        "final": final,
        "baselineGeneral": baseline_general,
        "finalGeneral": final_general,
        "lossCurve": result.loss_curve,
        "evalLosses": result.eval_losses,
        "samplesPerSecond": result.samples_per_second,
        "mixedPrecision": result.mixed_precision,
        "lossScale": result.loss_scale,
        "stepSeconds": result.step_seconds,
        "peakGpuMemoryBytes": result.peak_gpu_bytes,
        "hostPeakRssBytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        # The largest DataLoader worker (they map the same Arrow file as the main process).
        "hostPeakRssWorkerBytes": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
        "firstStepSeconds": result.first_step_seconds,
        "timeToFirstStepSeconds": (
            round(start_of_train + result.first_step_seconds, 3)
            if result.first_step_seconds is not None
            else None
        ),
        "trainSeconds": result.train_seconds,
        "secondsPerStage": timings.seconds,  # the upload itself is not in it: it writes this
        "exports": exports,
        "dataset": data.report.to_status().to_dict(),
        "compileCache": compiled.as_metrics() if compiled else None,
        "notes": notes
        + (compiled.notes if compiled else [])
        + (baselines.notes if baselines else []),
    }
    if not publish(store, run_uri, staging, config, metrics, data.report.to_json()):
        return _already_finished(store, run_uri, reporter)
    checkpoints.clear()  # after _SUCCESS: until then they are what a retry resumes from
    reporter.finished(True, Reason.COMPLETED, f"adapter written to {run_uri}", run_uri)
    return RunResult(run_uri=run_uri, metrics=metrics)


def _already_finished(store: Any, run_uri: str, reporter: Reporter) -> RunResult:
    """This run's folder holds its finished results (a Job re-created after its TTL removed the
    finished one, or a pod that died after writing them): succeed again, train nothing."""
    import json

    from .errors import TrainerFailure

    try:
        metrics = json.loads(store.read_bytes(run_uri + "metrics.json"))
    except (TrainerFailure, ValueError):
        metrics = {}
    final, base = metrics.get("final") or {}, metrics.get("baseline") or {}
    reporter.metrics(wer=final.get("wer"), baseline_wer=base.get("wer"))
    message = (
        f"adapter written to {run_uri} (an earlier attempt of this run finished it, "
        f"{SUCCESS} is there: nothing was trained again)"
    )
    log.info("%s", message)
    reporter.finished(True, Reason.COMPLETED, message, run_uri)
    return RunResult(run_uri=run_uri, metrics=metrics, already_finished=True)
