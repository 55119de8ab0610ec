"""`wft demo`: the whole loop on this machine, end to end, in a few minutes on 2 CPU cores.

`wft up` (embedded API, S3, operator, local Job runner), then: speech synthesised with
espeak-ng and a tiny Whisper uploaded to the embedded S3, a WhisperFineTune applied through
the Kubernetes client, followed live until it ends, and a summary (WER before and after, loss,
the adapter's URI, time per stage). Exit code 0 only when the resource reached Succeeded.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UserError

if TYPE_CHECKING:
    from wft_local.stack import LocalStack

NAME, NAMESPACE = "demo", "default"
GROUP, VERSION, PLURAL = "wft.dev", "v1alpha1", "whisperfinetunes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=60, help="training steps (default: 60)")
    parser.add_argument(
        "--samples", type=int, default=48, help="speech clips to synthesise (default: 48)"
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
        "--timeout", type=float, default=540.0, help="give up after this many seconds (540)"
    )


def resource(uris: dict[str, str], steps: int) -> dict[str, Any]:
    """The demo's WhisperFineTune: CPU-sized, everything else the API's defaults."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WhisperFineTune",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {
            "baseModel": uris["model"],
            "language": "en",
            "engine": "transformers",
            "quantization": "none",
            "dataset": {"uri": uris["dataset"], "format": "manifest", "evalFraction": 0.2},
            "lora": {"rank": 8, "alpha": 16},
            "training": {
                "maxSteps": steps,
                "batchSize": 4,
                "learningRate": 1e-2,
                "warmupSteps": 2,
                "checkpointSteps": max(steps, 1),
            },
            "output": {"uri": uris["output"]},
            "resources": {"gpus": 0, "cpu": "2", "memory": "4Gi"},
        },
    }


class Display:
    """One status line: rewritten in place on a terminal, a new line per change otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self.last = ""

    def show(self, status: dict[str, Any], elapsed: float) -> None:
        progress = status.get("progress") or {}
        metrics = status.get("metrics") or {}
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


def follow(stack: LocalStack, timeout: float) -> dict[str, Any]:
    """Poll the resource until Succeeded/Failed (or timeout); return its last status."""
    from kubernetes import client

    api = client.CustomObjectsApi(stack.kube.api_client())
    display = Display()
    start = time.monotonic()
    status: dict[str, Any] = {}
    try:
        while time.monotonic() - start < timeout:
            obj = api.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, NAME)
            status = obj.get("status") or {}
            display.show(status, time.monotonic() - start)
            if status.get("phase") in ("Succeeded", "Failed"):
                return status
            time.sleep(1.0)
    finally:
        display.done()
    status = dict(status)
    status["message"] = f"timed out after {timeout:.0f}s in phase {status.get('phase')}"
    status["phase"] = "TimedOut"
    return status


def metrics_json(stack: LocalStack, status: dict[str, Any], output_uri: str) -> dict[str, Any]:
    from botocore.exceptions import BotoCoreError, ClientError
    from wft_api.v1alpha1 import ResourceRef, run_output_uri

    ref = ResourceRef(
        namespace=NAMESPACE, name=NAME, generation=status.get("observedGeneration") or 1
    )
    uri = run_output_uri(output_uri, ref)
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    try:
        body = stack.s3_client().get_object(Bucket=bucket, Key=prefix + "metrics.json")["Body"]
        return dict(json.loads(body.read()))
    except (BotoCoreError, ClientError, ValueError) as err:  # the summary still prints
        return {"_error": f"{uri}metrics.json: {err}"}


def pod_log_tail(stack: LocalStack, status: dict[str, Any], lines: int = 40) -> str:
    job = status.get("jobName") or ""
    logs = sorted(stack.kube.logs_dir.glob(f"{job}-*.log"), key=lambda p: p.stat().st_mtime)
    if not job or not logs:
        return "(no trainer pod log)"
    text = logs[-1].read_text(errors="replace").splitlines()[-lines:]
    return f"{logs[-1]}:\n" + "\n".join(text)


def _pct(value: Any) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else "n/a"


def _losses(metrics: dict[str, Any], last: Any) -> str:
    curve = metrics.get("lossCurve") or []
    if len(curve) >= 2:
        return (
            f"{curve[0][1]:.3f} at step {curve[0][0]} -> {curve[-1][1]:.3f} at step {curve[-1][0]}"
        )
    return str(last)


def summary(status: dict[str, Any], metrics: dict[str, Any], local_s: dict[str, float]) -> str:
    m = status.get("metrics") or {}
    ds = status.get("dataset") or {}
    rows = [
        "",
        "wft demo: Succeeded",
        f"  WER             {_pct(m.get('baselineWer'))} before -> {_pct(m.get('wer'))} after"
        "\n                  (the base model is a tiny random Whisper, as no weights can be "
        "downloaded here:\n                  its WER means little; the loss shows the learning)",
        f"  training loss   {_losses(metrics, m.get('trainLoss'))}",
        f"  samples         {ds.get('samples')} train, {ds.get('evalSamples')} eval "
        f"({ds.get('hours', 0) * 3600:.0f} s of audio)",
        f"  adapter         {status.get('adapterUri')}",
        "  time per stage",
    ]
    for stage, seconds in local_s.items():
        rows.append(f"    {stage:<20}{seconds:7.1f} s")
    for stage, seconds in (metrics.get("secondsPerStage") or {}).items():
        rows.append(f"    trainer {stage:<12}{seconds:7.1f} s")
    if "_error" in metrics:
        rows.append(f"    (trainer stage times unavailable: {metrics['_error']})")
    return "\n".join(rows)


def run(args: argparse.Namespace) -> int:
    from kubernetes import client
    from wft_local.demo_data import prepare_demo_inputs
    from wft_local.speech import SpeechError
    from wft_local.stack import LocalStack, StackError

    from .up import usage, wait_for_signal

    if args.steps < 1 or args.samples < 5:
        raise UserError("--steps must be at least 1 and --samples at least 5")
    times: dict[str, float] = {}
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
                uris = prepare_demo_inputs(stack.s3_client(), work / "demo", args.samples)
            except SpeechError as err:
                raise UserError(str(err)) from None
            times["speech + model"] = time.monotonic() - t0
            print(
                f"wft demo: {args.samples} clips in {uris['dataset']}, base model in "
                f"{uris['model']}",
                flush=True,
            )
            body = resource(uris, args.steps)
            t0 = time.monotonic()
            client.CustomObjectsApi(stack.kube.api_client()).create_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, PLURAL, body
            )
            print(
                f"wft demo: applied WhisperFineTune {NAMESPACE}/{NAME} "
                f"({args.steps} steps); following it:",
                flush=True,
            )
            status = follow(stack, args.timeout)
            times["apply -> finished"] = time.monotonic() - t0
            ok = status.get("phase") == "Succeeded"
            if ok:
                print(summary(status, metrics_json(stack, status, uris["output"]), times))
            else:
                print(f"\nwft demo: {status.get('phase')}: {status.get('message')}", flush=True)
                print(pod_log_tail(stack, status), flush=True)
            if args.keep_running:
                print("\n" + usage(stack), flush=True)
                wait_for_signal()
            return 0 if ok else 1
    except StackError as err:
        raise UserError(str(err)) from None
