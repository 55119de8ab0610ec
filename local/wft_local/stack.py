"""`wft up` as a library: the embedded Kubernetes API, an S3 server, the operator and the
local Job runner, all on loopback, started and stopped together.

    with LocalStack(workdir) as stack:
        stack.kube                # EmbeddedKubernetes
        stack.kubeconfig_path     # for kubectl and the kubernetes client
        stack.s3_endpoint         # http://127.0.0.1:PORT (moto's S3 server)
        stack.s3_client()         # a boto3 S3 client for it

The operator is the real one (`python -m wft_operator -A`), a subprocess with KUBECONFIG
pointing here, supervised: if it exits, it is started again (as a Deployment's pod would be)
and `on_operator_restart` hears of it. Trainer processes get the embedded S3's endpoint and credentials in their
environment (AWS_ENDPOINT_URL and friends, which boto3 honours) unless their Job sets them, so
resources that name no `spec.storage.endpoint` use the embedded S3. Stopping (or leaving the
`with`) stops the operator (SIGTERM, then SIGKILL), every trainer process, and both servers.
moto keeps its buckets per Python process, so two stacks in one process (tests) share them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .job_runner import JobRunner
from .kube_api import EmbeddedKubernetes

S3_ACCESS_KEY = "wft-local"
S3_SECRET_KEY = "wft-local-secret"
S3_REGION = "us-east-1"
OPERATOR_START_TIMEOUT_S = 90.0
SUPERVISE_EVERY_S = 1.0


class StackError(RuntimeError):
    """A part of the stack did not start; the message says which and why."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalStack:
    def __init__(
        self,
        workdir: str | Path | None = None,
        kubeconfig: str | Path | None = None,
        with_operator: bool = True,
        operator_env: dict[str, str] | None = None,
        on_operator_restart: Callable[[int, int], None] | None = None,
    ) -> None:
        self._tmp = None if workdir else tempfile.mkdtemp(prefix="wft-up-")
        self.workdir = Path(workdir or self._tmp or ".")
        self.with_operator = with_operator
        self.operator_env = dict(operator_env or {})
        self.kubeconfig_path = Path(kubeconfig) if kubeconfig else self.workdir / "kubeconfig"
        self.operator_log = self.workdir / "operator.log"
        self.kube: EmbeddedKubernetes
        self.runner: JobRunner | None = None
        self.s3_endpoint = ""
        self._s3: Any = None
        self._operator: subprocess.Popen[bytes] | None = None
        self.on_operator_restart = on_operator_restart  # (exit code, restarts so far)
        self.operator_restarts = 0
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None

    def __enter__(self) -> LocalStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def s3_env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.s3_endpoint,
            "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
            "AWS_DEFAULT_REGION": S3_REGION,
        }

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        self.workdir.mkdir(parents=True, exist_ok=True)
        # moto's server logs every request through werkzeug; the user wants the stack's output.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        port = free_port()
        self._s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self._s3.start()
        self.s3_endpoint = f"http://127.0.0.1:{port}"
        self.kube = EmbeddedKubernetes(workdir=self.workdir / "cluster")
        self.kube.start()
        self.kube.write_kubeconfig(self.kubeconfig_path)
        self.runner = JobRunner(self.kube, extra_env=self.s3_env)
        self.runner.start()
        if self.with_operator:
            self._start_operator()
            self._supervisor = threading.Thread(
                target=self._supervise, name="wft-operator-supervisor", daemon=True
            )
            self._supervisor.start()

    def _supervise(self) -> None:
        """Start the operator again when it exits, after a growing pause (1 s, 2 s, ... 30 s),
        as the kubelet restarts a crashing container."""
        while not self._stopping.wait(SUPERVISE_EVERY_S):
            proc = self._operator
            if proc is None or proc.poll() is None:
                continue
            code = proc.returncode
            self.operator_restarts += 1
            if self.on_operator_restart is not None:
                self.on_operator_restart(code, self.operator_restarts)
            if self._stopping.wait(min(2 ** (self.operator_restarts - 1), 30)):
                return
            try:
                self._start_operator()
            except StackError as err:  # it failed to start: the next round tries again
                logging.getLogger(__name__).warning("%s", err)

    def _start_operator(self) -> None:
        health = free_port()
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig_path),
            "WFT_HEALTH_PORT": str(health),
            "WFT_METRICS_PORT": str(free_port()),
            "WFT_BIND_ADDRESS": "127.0.0.1",  # nothing else on the machine reaches them
            "PYTHONUNBUFFERED": "1",
            **self.operator_env,
        }
        with self.operator_log.open("ab") as log:
            self._operator = subprocess.Popen(
                [sys.executable, "-m", "wft_operator", "-A"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches us; we stop it in order
            )
        deadline = time.monotonic() + OPERATOR_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._operator.poll() is not None:
                raise StackError(
                    f"the operator exited with code {self._operator.returncode} while starting; "
                    f"its log ({self.operator_log}):\n{self.operator_log_tail()}"
                )
            url = f"http://127.0.0.1:{health}/healthz"
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1):
                return
            time.sleep(0.3)
        raise StackError(
            f"the operator did not report healthy within {OPERATOR_START_TIMEOUT_S:.0f} s; "
            f"its log ({self.operator_log}):\n{self.operator_log_tail()}"
        )

    def operator_log_tail(self, lines: int = 30) -> str:
        if not self.operator_log.exists():
            return "(no log)"
        return "\n".join(self.operator_log.read_text(errors="replace").splitlines()[-lines:])

    def s3_client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint,
            aws_access_key_id=S3_ACCESS_KEY,
            aws_secret_access_key=S3_SECRET_KEY,
            region_name=S3_REGION,
        )

    def stop(self) -> None:
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join(timeout=5)
            self._supervisor = None
        if self._operator is not None:
            _stop_process(self._operator, grace=10.0)
            self._operator = None
        if self.runner is not None:
            self.runner.stop()
            self.runner = None
        if getattr(self, "kube", None) is not None and self.kube.store is not None:
            self.kube.stop()
        if self._s3 is not None:
            self._s3.stop()
            self._s3 = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


def _stop_process(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM to the process group, SIGKILL after `grace` seconds."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
