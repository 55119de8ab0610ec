"""Preemption: SIGTERM the trainer after a checkpoint, start it again; it resumes at the saved
step and ends with the same adapter as an uninterrupted run with the same seed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from .trainer_fixtures import spec, stage_s3

pytestmark = pytest.mark.integration

BUCKET = "resume-train"


def config(name: str) -> str:
    return json.dumps(
        {
            "resource": {"namespace": "ns", "name": name, "generation": 1},
            "reportStatus": False,
            "spec": spec(BUCKET, maxSteps=40, checkpointSteps=5),
        }
    )


def start(name: str, work: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "WFT_CONFIG": config(name),
        "WFT_WORK_DIR": str(work),
        "WFT_TERMINATION_LOG": str(work / "termination-log"),
        "OMP_NUM_THREADS": "2",
    }
    work.mkdir(parents=True, exist_ok=True)
    log = open(work / "log.txt", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "wft_trainer"], env=env, stdout=log, stderr=subprocess.STDOUT
    )


def wait(proc: subprocess.Popen[bytes], work: Path) -> int:
    code = proc.wait(timeout=300)
    assert code in (0, 143), (work / "log.txt").read_text()[-3000:]
    return code


def adapter(s3: Any, name: str) -> dict[str, Any]:
    from safetensors.torch import load

    key = f"out/ns/{name}/generation-1/adapter_model.safetensors"
    return load(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def checkpoint_folders(s3: Any, name: str) -> set[str]:
    prefix = f"out/ns/{name}/generation-1/checkpoints/"
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {obj["Key"][len(prefix) :].split("/")[0] for obj in listing}


def test_sigterm_then_resume_matches_uninterrupted_run(
    aws_env: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    import torch

    s3 = boto3.client("s3")
    stage_s3(s3, tmp_path, tiny_model_dir, BUCKET)
    straight = start("straight", tmp_path / "straight")
    assert wait(straight, tmp_path / "straight") == 0

    first = start("resumed", tmp_path / "attempt-1")
    marker = "out/ns/resumed/generation-1/checkpoints/latest.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and first.poll() is None:
        try:
            if json.loads(s3.get_object(Bucket=BUCKET, Key=marker)["Body"].read())["step"] >= 5:
                break
        except s3.exceptions.NoSuchKey:
            pass
        time.sleep(0.1)
    first.send_signal(signal.SIGTERM)
    assert wait(first, tmp_path / "attempt-1") == 143  # non-zero: the Job retries
    saved = json.loads(s3.get_object(Bucket=BUCKET, Key=marker)["Body"].read())["step"]
    assert 5 <= saved < 40
    # Only the newest checkpoint is kept in S3 (older ones were deleted as each new one landed).
    assert checkpoint_folders(s3, "resumed") == {f"step-{saved}", "latest.json"}
    assert not list((tmp_path / "attempt-1" / "checkpoints").glob("step-*"))  # nor on the disk

    second = start("resumed", tmp_path / "attempt-2")  # a fresh pod: nothing local survives
    assert wait(second, tmp_path / "attempt-2") == 0
    metrics = json.loads(
        s3.get_object(Bucket=BUCKET, Key="out/ns/resumed/generation-1/metrics.json")["Body"].read()
    )
    assert metrics["resumedFrom"] == saved and metrics["steps"] == 40
    # Success: the adapter is the result, the checkpoints are gone (pointer included).
    assert checkpoint_folders(s3, "resumed") == set()
    assert checkpoint_folders(s3, "straight") == set()
    assert len(metrics["lossCurve"]) == 40
    reference = json.loads(
        s3.get_object(Bucket=BUCKET, Key="out/ns/straight/generation-1/metrics.json")["Body"].read()
    )
    resumed_losses = [loss for _, loss in metrics["lossCurve"]]
    assert resumed_losses == pytest.approx([loss for _, loss in reference["lossCurve"]], abs=1e-4)
    assert metrics["baseline"]["evalLoss"] == reference["baseline"]["evalLoss"]

    a, b = adapter(s3, "straight"), adapter(s3, "resumed")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k
