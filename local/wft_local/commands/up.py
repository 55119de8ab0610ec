"""`wft up`: a whole cluster-less setup on loopback until Ctrl-C.

The embedded Kubernetes API, an S3 server (moto), the operator and the local Job runner that
plays kubelet (see `wft_local.stack`). It writes a kubeconfig and prints how to use it.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from wft_cli.errors import UserError

if TYPE_CHECKING:
    from wft_local.stack import LocalStack


def default_kubeconfig() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "wft" / "kubeconfig"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubeconfig",
        metavar="PATH",
        help=f"where to write the kubeconfig (default: {default_kubeconfig()})",
    )
    parser.add_argument(
        "--workdir",
        metavar="DIR",
        help="keep the cluster's files here: pod logs, operator log (default: a temporary "
        "directory, removed on exit)",
    )
    parser.add_argument(
        "--no-example",
        action="store_true",
        help="do not put tiny.en and the example dataset into the S3 (no espeak-ng needed)",
    )


def usage(stack: LocalStack, example: Path | None, example_error: str = "") -> str:
    kc = f"kubectl --kubeconfig {stack.kubeconfig_path}"
    env = stack.s3_env
    if example is not None:
        first = f"""\
Try (OpenAI's tiny.en and cardiology dictation are in its S3 already; about 4 minutes):
  {kc} apply -f {example}
  {kc} get wft -w                   # phase, progress, ETA, loss, WER
  {kc} describe wft first-finetune  # conditions and Events
"""
    else:
        first = f"No example was seeded ({example_error}); apply your own resource:\n"
    return f"""\
wft up: an embedded cluster is running on loopback (Ctrl-C stops everything).

  Kubernetes API   {stack.kube.url}   (kubeconfig: {stack.kubeconfig_path}, mode 0600:
                   its token is the only way in)
  S3 (moto)        {stack.s3_endpoint}   access key {env["AWS_ACCESS_KEY_ID"]}, \
secret key {env["AWS_SECRET_ACCESS_KEY"]}, region {env["AWS_DEFAULT_REGION"]}
  Operator log     {stack.operator_log}   (restarted if it exits)
  Pod logs         {stack.kube.logs_dir}/<pod>.log   (or {kc} logs POD)

{first}  export KUBECONFIG={stack.kubeconfig_path}   # then plain kubectl and helm work too
  kubectl get jobs,pods,events
  helm install wft charts/whisper-finetune -n wft-system --create-namespace \\
    --set crds.install=false          # the CRD is served already; the Deployment is not run

Resources that name no spec.storage.endpoint use this S3; put data there with e.g.
  AWS_ENDPOINT_URL={stack.s3_endpoint} AWS_ACCESS_KEY_ID={env["AWS_ACCESS_KEY_ID"]} \
AWS_SECRET_ACCESS_KEY={env["AWS_SECRET_ACCESS_KEY"]} aws s3 cp ...
It is not a cluster: no scheduler, no kubelet and no images (only Jobs a WhisperFineTune
controls run, as local processes with this Python), no controllers but the Job runner, no RBAC
enforcement beyond the kubeconfig's token. The S3 stand-in (moto) checks no credentials: any
process on this machine can read and write its buckets, so keep private audio out of it.
"""


def wait_for_signal() -> int:
    """Block until SIGINT or SIGTERM; return the signal number."""
    received: list[int] = []
    done = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        done.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not done.wait(1.0):
            pass
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    return received[0]


def run(args: argparse.Namespace) -> int:
    from wft_local.demo_data import seed_example
    from wft_local.speech import SpeechError
    from wft_local.stack import LocalStack, StackError
    from wft_local.whisper_packages import ModelPackageError

    kubeconfig = Path(args.kubeconfig) if args.kubeconfig else default_kubeconfig()

    def restarted(code: int, count: int) -> None:
        print(f"wft up: the operator exited (code {code}); starting it again (restart {count}, "
              "its log says why)", flush=True)  # fmt: skip

    try:
        with LocalStack(
            workdir=args.workdir, kubeconfig=kubeconfig, on_operator_restart=restarted
        ) as stack:
            example, why = None, "--no-example"
            if not args.no_example:
                try:
                    example = seed_example(stack.s3_client(), stack.workdir)
                except (SpeechError, ModelPackageError) as err:
                    why = str(err)
            print(usage(stack, example, why), flush=True)
            signum = wait_for_signal()
            print(f"\nwft up: {signal.Signals(signum).name} received; stopping.", flush=True)
    except StackError as err:
        raise UserError(str(err)) from None
    print("wft up: stopped (operator, trainer processes, S3 and API server).", flush=True)
    return 0
