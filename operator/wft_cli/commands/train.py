"""`wft train -f finetune.yaml`: the whole trainer on this machine, no cluster.

The same pipeline the Job runs (prepare, load, baseline eval, train, final eval, upload), with
S3 credentials from the standard AWS environment and a progress bar instead of status patches.
The resource's generation is metadata.generation (1 when absent): results go to
<output.uri>/<namespace>/<name>/generation-<n>/ (no uid: that part of a cluster run's folder is
left out), and a finished generation is never overwritten: run again with the same spec, it
reports the finished run and trains nothing; with another spec, it refuses (OutputExists) and
says to pick a new metadata.generation.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from wft_api.v1alpha1 import DatasetStatus
from wft_trainer.results import RunMetrics  # light: no torch, no transformers
from wft_trainer.status import Reporter

from ..errors import UserError
from ..files import add_files_argument
from ..local_run import load_resource, local_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_files_argument(parser, one=True)
    parser.add_argument(
        "--work-dir",
        metavar="DIR",
        type=Path,
        help="where data, models and checkpoints are staged (default: a temp dir)",
    )
    parser.add_argument(
        "-n",
        "--namespace",
        default=None,
        help="namespace for the output path when metadata.namespace is unset",
    )
    parser.add_argument("--no-progress", action="store_true", help="log lines, no progress bar")


def run(args: argparse.Namespace) -> int:
    config = local_config(load_resource(args.filename), args.namespace)
    # Heavy imports (torch, transformers) only now: `wft --help` stays fast.
    from wft_trainer.errors import TrainerFailure
    from wft_trainer.loop import Preempted
    from wft_trainer.pipeline import run as run_pipeline

    reporter = BarReporter(enabled=not args.no_progress)
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="wft-train-"))
    try:
        result = run_pipeline(config, reporter, work_dir)
    except TrainerFailure as err:
        raise UserError(f"{err.reason}: {err.message}") from None
    except Preempted as err:
        raise UserError(str(err), exit_code=143) from None
    finally:
        reporter.close()
    if result.already_finished:
        print(
            f"wft train: {result.run_uri} holds this run, finished earlier (same spec, same "
            "generation): nothing trained again. To train again, give metadata.generation a "
            "number not used yet",
            file=sys.stderr,
        )
    print_summary(result.run_uri, result.metrics)
    return 0


def print_summary(run_uri: str, m: RunMetrics | None) -> None:
    def pct(v: Any) -> str:
        return f"{100 * v:.1f}%" if isinstance(v, int | float) else "n/a"

    print(f"adapter:      {run_uri}")
    if m is None:  # a run finished earlier whose metrics.json could not be read
        print("metrics:      n/a (metrics.json unreadable)")
        return
    base, final = m.baseline, m.final
    curve = m.loss_curve or [(0, float("nan"))]
    rate = m.samples_per_second
    print(f"engine:       {m.engine} ({m.quantization}), batch {m.batch_size}")
    print(f"steps:        {m.steps}, loss {curve[0][1]:.3f} -> {curve[-1][1]:.3f}")
    print(
        f"WER:          {pct(base.wer)} -> {pct(final.wer)} "
        f"(normalized {pct(base.wer_normalized)} -> {pct(final.wer_normalized)})"
    )
    print(f"throughput:   {rate:.2f} samples/s" if rate else "throughput:   n/a")
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in m.seconds_per_stage.items())
    print(f"time:         {stages}")


class BarReporter(Reporter):
    """Stage lines and a tqdm bar for training steps (what status patches say in a cluster)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bar: Any = None

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def stage(self, phase: str, message: str) -> None:
        self._close_bar()
        print(f"[{phase}] {message}", file=sys.stderr, flush=True)

    def progress(
        self, step: int, total: int, loss: float, epoch: float, step_seconds: float
    ) -> None:
        if not self.enabled:
            return
        if self.bar is not None and (step <= self.bar.n or total != self.bar.total):
            self._close_bar()  # training started over (batchSize auto backed off)
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total,
                initial=step - 1,
                desc="training",
                unit="step",
                file=sys.stderr,
                dynamic_ncols=True,
            )
        self.bar.set_postfix(loss=f"{loss:.4f}", epoch=f"{epoch:.2f}", refresh=False)
        self.bar.update(1)

    def dataset(self, summary: DatasetStatus) -> None:
        reasons = ", ".join(f"{k} {v}" for k, v in summary.skipped_reasons.items()) or "none"
        print(
            f"[Preparing] {summary.samples} training and {summary.eval_samples} eval samples "
            f"({summary.hours:.2f} h, format {summary.format}); skipped {summary.skipped} "
            f"({reasons})",
            file=sys.stderr,
            flush=True,
        )

    def finished(self, succeeded: bool, reason: str, message: str, adapter_uri: str | None) -> None:
        self._close_bar()

    def close(self) -> None:
        self._close_bar()
