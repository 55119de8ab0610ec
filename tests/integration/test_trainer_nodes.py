"""Several nodes (issue 20), on the CPU with gloo: two torchrun launchers on this machine, each a
"node" with its own work dir (they share no file system, as two pods do not), meeting at node
0's port as the pods of an Indexed Job meet at pod 0; S3 is moto's.

- Two nodes of one rank each at batch 2 train exactly what one process trains at batch 4: the
  same loss curve (within 1e-5) and the same adapter. Node 1 never runs the data stage: rank 0
  prepared it and shared it through S3 (the run's `prepared/` folder), gone after the run.
- A SIGTERM to node 1's launcher (a preempted pod: the kubelet stops the container) checkpoints
  on rank 0 and stops both nodes with 143; both started again resume from that checkpoint.
- Pod 0 lost during its final evaluation (after every rank has trained): node 1 fails too
  instead of succeeding, so that the Job starts both again (a pod that succeeded never is).
"""

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
import psutil
import pytest

from .test_trainer_ddp import (
    BUCKET,
    N_TRAIN,
    STEPS,
    adapter,
    assert_same_adapter,
    config,
    free_port,
    losses,
    metrics,
    start,
    wait,
)
from .trainer_fixtures import stage_s3

pytestmark = pytest.mark.integration


def start_nodes(name: str, work: Path, nodes: int = 2) -> list[subprocess.Popen[bytes]]:
    """The command the operator renders for `resources.nodes: 2` (render.trainer_command), with
    pod 0's DNS name as loopback and the completion index as the node rank."""
    port = str(free_port())
    procs = []
    for node in range(nodes):
        home = work / f"node-{node}"
        home.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "WFT_CONFIG": config(name, batch_size=2),
            "WFT_WORK_DIR": str(home / "work"),
            "WFT_CACHE_DIR": str(home / "cache"),
            "TMPDIR": str(home),
            "WFT_TERMINATION_LOG": str(home / "termination-log"),
            "OMP_NUM_THREADS": "1",
        }
        command = [
            sys.executable, "-m", "wft_trainer.launch", f"--nnodes={nodes}",
            "--nproc-per-node=1", f"--node-rank={node}", "--master-addr=127.0.0.1",
            f"--master-port={port}", "--module", "wft_trainer",
        ]  # fmt: skip
        log = open(work / f"log-{node}.txt", "ab")  # noqa: SIM115 - closed with the process
        # A session of its own: a pod's processes, which a test can kill together.
        procs.append(
            subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        )
    return procs


def latest_step(s3: Any, name: str) -> int:
    marker = f"out/ns/{name}/generation-1/checkpoints/latest.json"
    try:
        return int(json.loads(s3.get_object(Bucket=BUCKET, Key=marker)["Body"].read())["step"])
    except s3.exceptions.NoSuchKey:
        return 0


def test_two_nodes_train_as_one_process_share_the_data_and_resume_together(
    aws_env: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    s3 = boto3.client("s3")
    stage_s3(s3, tmp_path, tiny_model_dir, BUCKET, n_train=N_TRAIN)

    one = start("single", tmp_path / "single", batch_size=4, world=1)
    assert wait(one, tmp_path / "single") == [0]
    single = metrics(s3, "single")

    first = start_nodes("nodes", tmp_path / "attempt-1")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and all(p.poll() is None for p in first):
        if latest_step(s3, "nodes") >= 3:
            break
        time.sleep(0.05)
    first[1].send_signal(signal.SIGTERM)  # node 1's pod stopped: torchrun passes it to its rank
    assert wait(first, tmp_path / "attempt-1") == [143, 143]
    saved = latest_step(s3, "nodes")
    assert 3 <= saved < STEPS
    node1 = (tmp_path / "attempt-1" / "log-1.txt").read_text()
    # Node 1 reused rank 0's prepared data from S3; it ran no data stage of its own.
    assert "reusing prepared data" in node1 and "(s3 cache)" in node1
    assert "prepared " not in node1.replace("reusing prepared data", "")
    shared = s3.list_objects_v2(Bucket=BUCKET, Prefix="out/ns/nodes/generation-1/prepared/")
    assert shared.get("KeyCount", 0) > 0
    # Rank 0 alone checkpointed and writes the pod's message; node 1 has neither.
    work1 = tmp_path / "attempt-1" / "node-1" / "work"
    assert not list(work1.glob("checkpoints-rank-1/step-*"))
    assert not (tmp_path / "attempt-1" / "node-1" / "termination-log").exists()

    second = start_nodes("nodes", tmp_path / "attempt-2")  # fresh pods: empty disks
    assert wait(second, tmp_path / "attempt-2") == [0, 0]
    nodes = metrics(s3, "nodes")
    assert nodes["resumedFrom"] == saved
    assert losses(nodes) == pytest.approx(losses(single), abs=1e-5)
    assert_same_adapter(adapter(s3, "single"), adapter(s3, "nodes"))
    assert nodes["final"]["wer"] == single["final"]["wer"]
    # The retry's rank 0 found its own data in the run's copy too; published, the copy is gone.
    assert "(s3 cache)" in (tmp_path / "attempt-2" / "log-0.txt").read_text()
    shared = s3.list_objects_v2(Bucket=BUCKET, Prefix="out/ns/nodes/generation-1/prepared/")
    assert shared.get("KeyCount", 0) == 0


def test_pod_0_lost_after_training_fails_node_1_too(
    aws_env: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    s3 = boto3.client("s3")
    # Enough held-out clips that rank 0's final evaluation lasts seconds, not a blink: the
    # moment to take pod 0 away.
    stage_s3(s3, tmp_path, tiny_model_dir, BUCKET, n_train=N_TRAIN, n_eval=48)
    procs = start_nodes("lost", tmp_path)
    log0 = tmp_path / "log-0.txt"
    deadline = time.monotonic() + 240
    while "word error rate of the fine-tuned model" not in log0.read_text():
        assert time.monotonic() < deadline and procs[0].poll() is None, log0.read_text()[-3000:]
        time.sleep(0.02)
    # The node went away: its launcher and its rank (torchrun gives each worker a session of
    # its own) killed at once, no checkpoint, no message.
    pod0 = psutil.Process(procs[0].pid)
    for process in [pod0, *pod0.children(recursive=True)]:
        process.kill()
    code = procs[1].wait(timeout=240)
    procs[0].wait(timeout=30)
    success = "out/ns/lost/generation-1/_SUCCESS"
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix=success).get("KeyCount", 0) == 0
    assert code != 0, (tmp_path / "log-1.txt").read_text()[-3000:]
