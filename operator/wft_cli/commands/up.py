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

from ..errors import UserError

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


def usage(stack: LocalStack) -> str:
    kc = f"kubectl --kubeconfig {stack.kubeconfig_path}"
    env = stack.s3_env
    return f"""\
wft up: an embedded cluster is running on loopback (Ctrl-C stops everything).

  Kubernetes API   {stack.kube.url}   (kubeconfig: {stack.kubeconfig_path})
  S3 (moto)        {stack.s3_endpoint}   access key {env["AWS_ACCESS_KEY_ID"]}, \
secret key {env["AWS_SECRET_ACCESS_KEY"]}, region {env["AWS_DEFAULT_REGION"]}
  Operator log     {stack.operator_log}
  Pod logs         {stack.kube.logs_dir}/<pod>.log   (or {kc} logs POD)

Try:
  export KUBECONFIG={stack.kubeconfig_path}
  {kc} apply --validate=false -f examples/minimal.yaml
  {kc} get wft                      # phase, progress, ETA, loss, WER
  {kc} describe wft call-center-en  # conditions and Events
  {kc} get jobs,pods

Resources that name no spec.storage.endpoint use this S3; put data there with e.g.
  AWS_ENDPOINT_URL={stack.s3_endpoint} AWS_ACCESS_KEY_ID={env["AWS_ACCESS_KEY_ID"]} \
AWS_SECRET_ACCESS_KEY={env["AWS_SECRET_ACCESS_KEY"]} aws s3 cp ...
It is not a cluster: no scheduler, no images (Jobs run as local processes with this Python),
no RBAC enforcement; kubectl needs --validate=false (no OpenAPI documents).
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
    from wft_local.stack import LocalStack, StackError

    kubeconfig = Path(args.kubeconfig) if args.kubeconfig else default_kubeconfig()
    try:
        with LocalStack(workdir=args.workdir, kubeconfig=kubeconfig) as stack:
            print(usage(stack), flush=True)
            signum = wait_for_signal()
            print(f"\nwft up: {signal.Signals(signum).name} received; stopping.", flush=True)
    except StackError as err:
        raise UserError(str(err)) from None
    print("wft up: stopped (operator, trainer processes, S3 and API server).", flush=True)
    return 0
