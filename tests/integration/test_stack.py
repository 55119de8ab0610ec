"""`wft up`'s stack: the real operator and the local Job runner against the embedded API and S3."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from wft_local.stack import LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.slow]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "minimal.yaml"


def wait_for(check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s")


# gpus 2: the local Job runner has no GPUs; it runs the pod's torchrun (wft_trainer.launch) and
# its two trainer ranks as local processes, which talk over gloo.
@pytest.mark.parametrize("gpus", [None, 2])
def test_apply_runs_the_trainer_against_the_embedded_s3(tmp_path: Path, gpus: int | None) -> None:
    with LocalStack(tmp_path) as stack:
        operator_pid = stack._operator.pid if stack._operator else 0
        api_client = stack.kube.api_client()
        custom, batch = client.CustomObjectsApi(api_client), client.BatchV1Api(api_client)
        stack.s3_client().create_bucket(Bucket="speech-data")  # exists, but holds no audio
        body = yaml.safe_load(EXAMPLE.read_text())
        # An s3:// model keeps the trainer off the (unreachable) hub, so it fails fast.
        body["spec"]["baseModel"] = "s3://speech-data/models/none/"
        if gpus:
            body["spec"]["resources"] = {"gpus": gpus}
        custom.create_namespaced_custom_object(
            "wft.dev", "v1alpha1", "default", "whisperfinetunes", body
        )
        job = wait_for(lambda: batch.list_namespaced_job("default").items, 30)[0]
        assert job.metadata.owner_references[0].kind == "WhisperFineTune"
        command = job.spec.template.spec.containers[0].command
        assert ("--nproc-per-node=2" in command) == (gpus == 2)

        def failed() -> dict[str, Any] | None:
            obj = custom.get_namespaced_custom_object(
                "wft.dev", "v1alpha1", "default", "whisperfinetunes", "call-center-en"
            )
            return obj["status"] if obj.get("status", {}).get("phase") == "Failed" else None

        # The trainer reached the embedded S3 (no endpoint in the spec) and found no data there.
        status = wait_for(failed, 120)
        assert "s3://speech-data/" in status["message"], status
    with pytest.raises(ProcessLookupError):
        os.kill(operator_pid, 0)


def _processes_with(marker: str) -> list[int]:
    """PIDs whose environment mentions `marker` (the operator and trainers get KUBECONFIG)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if marker.encode() in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_wft_up_serves_kubectl_and_stops_on_sigint(tmp_path: Path) -> None:
    """`wft up` as a user starts it: the banner's first command, run exactly as printed, starts
    a real Whisper's fine-tune (the demo test follows the same resource to Succeeded)."""
    import shlex

    from kubernetes import config as kube_config

    kubeconfig = tmp_path / "up-kubeconfig"
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wft_cli",
            "up",
            "--kubeconfig",
            str(kubeconfig),
            "--workdir",
            str(tmp_path / "work"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert up.stdout is not None
        head = [up.stdout.readline()]  # the usage is printed once everything is up
        assert "Ctrl-C stops everything" in head[0], head
        while "beyond the kubeconfig's token" not in head[-1]:  # its last line
            head.append(up.stdout.readline())
        banner = "".join(head)
        configuration = client.Configuration()
        kube_config.load_kube_config(str(kubeconfig), client_configuration=configuration)
        api = client.ApiClient(configuration)
        assert "default" in {n.metadata.name for n in client.CoreV1Api(api).list_namespace().items}
        wait_for(lambda: _processes_with(str(kubeconfig)), 30)  # the operator is running
        apply = next(line.strip() for line in head if " apply -f " in line)
        if shutil.which("kubectl"):
            done = subprocess.run(shlex.split(apply), capture_output=True, text=True, timeout=60)
            assert "first-finetune created" in done.stdout, done.stderr
            custom = client.CustomObjectsApi(api)
            phase = wait_for(
                lambda: (
                    (
                        custom.get_namespaced_custom_object(
                            "wft.dev", "v1alpha1", "default", "whisperfinetunes", "first-finetune"
                        ).get("status")
                        or {}
                    ).get("phase")
                    in ("Preparing", "Evaluating", "Training")
                ),
                60,
            )
            assert phase
    finally:
        up.send_signal(signal.SIGINT)
        out, _ = up.communicate(timeout=60)
    out = banner + out
    assert up.returncode == 0, out
    assert "kubectl --kubeconfig" in out and "get wft" in out and "S3 (moto)" in out
    assert "https://127.0.0.1:" in out and "helm install wft" in out
    assert "stopped" in out
    assert _processes_with(str(kubeconfig)) == []
