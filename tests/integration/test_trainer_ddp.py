"""Several ranks (issue 20), on the CPU with gloo: the trainer processes are started as torchrun
starts them (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), on the tiny random Whisper
and real espeak-ng speech in moto's S3.

- Two ranks at batch 2 train exactly what one process trains at batch 4: the same loss curve
  (within 1e-5) and the same adapter, with gradient accumulation and an epoch whose last batch
  leaves one rank with no sample at all.
- A SIGTERM to rank 1 alone stops both after the same step; rank 0 writes the checkpoint; both
  started again resume from it and end with the uninterrupted run's curve and adapter.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from .trainer_fixtures import spec, stage_s3

pytestmark = pytest.mark.integration

BUCKET = "ddp-train"
STEPS = 12
# 9 clips at a global batch of 4: each epoch ends with a batch of one sample, which rank 0
# takes and rank 1 has none of.
N_TRAIN = 9

# What the operator renders for `resources.gpus: 2` (render.py), run with this Python.
LAUNCH_TWO_RANKS = [
    sys.executable, "-m", "wft_trainer.launch", "--standalone", "--nnodes=1", "--nproc-per-node=2",
]  # fmt: skip


def config(name: str, batch_size: int) -> str:
    training = spec(
        BUCKET,
        maxSteps=STEPS,
        batchSize=batch_size,
        gradientAccumulationSteps=2,
        checkpointSteps=3,
    )
    training["lora"]["dropout"] = 0.0  # dropout draws per rank: equal curves need none
    return json.dumps(
        {
            "resource": {"namespace": "ns", "name": name, "generation": 1},
            "reportStatus": False,
            "spec": training,
        }
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(name: str, work: Path, batch_size: int, world: int) -> list[subprocess.Popen[bytes]]:
    """`world` trainer processes sharing one work dir, as torchrun's ranks on one node do."""
    work.mkdir(parents=True, exist_ok=True)
    port = str(free_port())
    procs = []
    for rank in range(world):
        env = {
            **os.environ,
            "WFT_CONFIG": config(name, batch_size),
            "WFT_WORK_DIR": str(work),
            "WFT_TERMINATION_LOG": str(work / f"termination-log-{rank}"),
            "OMP_NUM_THREADS": "1",
        }
        if world > 1:
            env.update(
                RANK=str(rank),
                LOCAL_RANK=str(rank),
                WORLD_SIZE=str(world),
                MASTER_ADDR="127.0.0.1",
                MASTER_PORT=port,
            )
        log = open(work / f"log-{rank}.txt", "ab")  # noqa: SIM115 - closed with the process
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "wft_trainer"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        )
    return procs


def wait(procs: list[subprocess.Popen[bytes]], work: Path) -> list[int]:
    codes = [p.wait(timeout=300) for p in procs]
    for rank, code in enumerate(codes):
        assert code in (0, 143), (work / f"log-{rank}.txt").read_text()[-3000:]
    return codes


def metrics(s3: Any, name: str) -> dict[str, Any]:
    key = f"out/ns/{name}/generation-1/metrics.json"
    return json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())  # type: ignore[no-any-return]


def adapter(s3: Any, name: str) -> dict[str, Any]:
    from safetensors.torch import load

    key = f"out/ns/{name}/generation-1/adapter_model.safetensors"
    return load(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def assert_same_adapter(a: dict[str, Any], b: dict[str, Any]) -> None:
    import torch

    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k


def losses(m: dict[str, Any]) -> list[float]:
    assert [step for step, _ in m["lossCurve"]] == list(range(1, STEPS + 1))
    return [loss for _, loss in m["lossCurve"]]


def test_two_ranks_train_as_one_process_at_twice_the_batch_and_resume_together(
    aws_env: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """One interrupted and resumed two-rank run against one process: the curve up to the
    SIGTERM is the uninterrupted two ranks', the rest the resumed ones' (CI has two cores:
    five trainer processes in all)."""
    s3 = boto3.client("s3")
    stage_s3(s3, tmp_path, tiny_model_dir, BUCKET, n_train=N_TRAIN)

    one = start("one", tmp_path / "one", batch_size=4, world=1)
    assert wait(one, tmp_path / "one") == [0]
    single = metrics(s3, "one")

    first = start("two", tmp_path / "attempt-1", batch_size=2, world=2)
    marker = "out/ns/two/generation-1/checkpoints/latest.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and all(p.poll() is None for p in first):
        try:
            if json.loads(s3.get_object(Bucket=BUCKET, Key=marker)["Body"].read())["step"] >= 3:
                break
        except s3.exceptions.NoSuchKey:
            pass
        time.sleep(0.05)
    first[1].send_signal(signal.SIGTERM)  # rank 1 only: rank 0 hears of it in the all-reduce
    assert wait(first, tmp_path / "attempt-1") == [143, 143]
    saved = json.loads(s3.get_object(Bucket=BUCKET, Key=marker)["Body"].read())["step"]
    assert 3 <= saved < STEPS
    # Rank 0 wrote the checkpoint (alone: rank 1's folder stays empty) and the pod's message.
    assert not list((tmp_path / "attempt-1" / "checkpoints-rank-1").glob("step-*"))
    assert not (tmp_path / "attempt-1" / "termination-log-1").exists()
    # Only rank 0 prepared the data; rank 1 read what it left in the shared work dir.
    assert "reusing prepared data" in (tmp_path / "attempt-1" / "log-1.txt").read_text()

    second = start("two", tmp_path / "attempt-2", batch_size=2, world=2)
    assert wait(second, tmp_path / "attempt-2") == [0, 0]
    ranks = metrics(s3, "two")
    assert ranks["resumedFrom"] == saved
    assert ranks["batchSize"] == 2 and single["batchSize"] == 4
    assert losses(ranks) == pytest.approx(losses(single), abs=1e-5)
    assert_same_adapter(adapter(s3, "one"), adapter(s3, "two"))
    # Rank 0 evaluated alone: the single process's WER (its eval batches follow batchSize, so
    # the eval loss is summed in another order).
    assert ranks["final"]["wer"] == single["final"]["wer"]
    assert ranks["baseline"]["evalLoss"] == pytest.approx(single["baseline"]["evalLoss"], rel=1e-6)


@pytest.mark.parametrize(("rank_codes", "pod_code"), [((0, 0), 0), ((0, 3), 3), ((1, 0), 1)])
def test_the_launcher_keeps_the_exit_code_the_job_acts_on(
    tmp_path: Path, rank_codes: tuple[int, int], pod_code: int
) -> None:
    """torchrun alone exits 1 for any failed rank; the pod's 3 (bad data) must fail the Job at
    once (podFailurePolicy), so `wft_trainer.launch` passes it on."""
    worker = tmp_path / "worker.py"
    worker.write_text(f"import os, sys\nsys.exit({list(rank_codes)}[int(os.environ['RANK'])])\n")
    done = subprocess.run(
        [*LAUNCH_TWO_RANKS, str(worker)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == pod_code, done.stderr[-2000:]


def _ranks_worker(rank: int, port: int, out: str) -> None:
    import torch
    from wft_trainer.distributed import Ranks

    env = {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2"}
    os.environ.update(env, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    ranks = Ranks.from_env(env)
    ranks.start()
    try:
        chosen = ranks.agree_min(8 if rank == 0 else 4)  # batchSize auto: what fits on both
        weight = torch.nn.Parameter(torch.zeros(3))
        if rank == 0:  # rank 1's share of the batch was empty: it has no gradient at all
            weight.grad = torch.tensor([1.0, 2.0, 3.0])
        loss, stop = ranks.sum_step([weight], [torch.tensor(0.25), torch.tensor(float(rank))])
        assert weight.grad is not None
        Path(out, f"rank-{rank}.json").write_text(
            json.dumps(
                {
                    "chosen": chosen,
                    "grad": weight.grad.tolist(),
                    "loss": float(loss),
                    "stop": float(stop),
                    "from_main": ranks.from_main({"base": "rank 0's"} if rank == 0 else None),
                }
            )
        )
    finally:
        ranks.stop()


def test_the_ranks_agree_on_the_batch_the_gradients_and_the_stop(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    mp.spawn(_ranks_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank-{rank}.json").read_text())
        assert got == {
            "chosen": 4,
            "grad": [1.0, 2.0, 3.0],
            "loss": 0.5,
            "stop": 1.0,  # rank 1 asked: both stop
            "from_main": {"base": "rank 0's"},
        }


def test_a_cause_no_retry_fixes_fails_the_pod_with_3_and_says_why(
    aws_env: str, tmp_path: Path
) -> None:
    """The trainer's ranks under the launcher, as the Job's pod runs them: a missing bucket exits
    3 through torchrun (the podFailurePolicy then fails the Job at once), and the termination
    message names the cause."""
    env = {
        **os.environ,
        "WFT_CONFIG": json.dumps(
            {
                "resource": {"namespace": "ns", "name": "nobucket", "generation": 1},
                "reportStatus": False,
                "spec": spec("no-such-bucket"),
            }
        ),
        "WFT_TERMINATION_LOG": str(tmp_path / "termination-log"),
        "WFT_CACHE_DIR": str(tmp_path / "cache"),
        "OMP_NUM_THREADS": "1",
    }
    env.pop("WFT_WORK_DIR", None)  # the ranks find their shared one (torchrun's run id)
    done = subprocess.run(
        [*LAUNCH_TWO_RANKS, "--module", "wft_trainer"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 3, done.stderr[-3000:]
    reported = json.loads((tmp_path / "termination-log").read_text())
    assert reported["reason"] == "S3NotFound" and "no-such-bucket" in reported["message"]


def test_a_checkpoint_of_another_number_of_ranks_is_refused(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """Its step counts global batches of another size: resumed, the data order would not line
    up. (Changing spec.resources.gpus changes the spec hash, so the operator's runs never meet
    one; a hand-run trainer with another WORLD_SIZE could.)"""
    import torch
    from wft_api.v1alpha1 import TrainingSpec
    from wft_trainer import engines
    from wft_trainer.batching import WhisperCollator
    from wft_trainer.checkpoint import STATE_FILE, Checkpoint, CheckpointStore
    from wft_trainer.errors import TrainerFailure
    from wft_trainer.loop import TrainingRecipe
    from wft_trainer.storage import S3Store

    from .test_batch_backoff import _dataset, _spec

    torch.save({"step": 3, "batch_size": 2, "world_size": 2}, tmp_path / STATE_FILE)
    loaded = engines.load(_spec(), str(tiny_model_dir))
    config = loaded.model.get_base_model().config
    recipe = TrainingRecipe(
        loaded,
        _dataset(config),
        TrainingSpec.model_validate({"maxSteps": 4, "batchSize": 2}),
        WhisperCollator(config.decoder_start_token_id),
        CheckpointStore(S3Store.from_spec(cache_dir=tmp_path), "s3://unused/run/", tmp_path),
        resume=Checkpoint(step=3, local_dir=tmp_path, meta={}),
    )
    with pytest.raises(TrainerFailure) as err:
        recipe.train()
    assert "trained by 2 ranks and this attempt has 1" in err.value.message
    assert "spec.resources.gpus" in err.value.message
