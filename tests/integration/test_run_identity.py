"""Runs have identities: the trainer against moto's S3 with the tiny Whisper.

- A resource deleted at a checkpoint and created again (new uid) with another learning rate
  trains from step 0 in a folder of its own; its model card tells its own rate and uid.
- Deleted after success and created again: it trains again (no "already holds a finished run").
- A checkpoint made by another spec in the same folder is never resumed.
- An attempt of a run that is already finished succeeds without training; a different spec
  meeting a finished folder fails permanently (OutputExists) with advice that works.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import boto3
import pytest
from wft_api import ResourceRef, TrainerConfig, WhisperFineTuneSpec
from wft_api.conditions import PERMANENT_REASONS, Reason
from wft_api.identity import spec_hash
from wft_trainer.errors import TrainerFailure
from wft_trainer.loop import Preempted
from wft_trainer.pipeline import StopRequest, run
from wft_trainer.status import Reporter

from .trainer_fixtures import spec, stage_s3

pytestmark = pytest.mark.integration

BUCKET = "run-identity"
STEPS = 8


class StopAt(Reporter):
    """Asks the loop to stop (as SIGTERM does) once `step` is reached."""

    def __init__(self, stop: StopRequest, step: int | None) -> None:
        self.stop, self.step = stop, step
        self.finished_with: tuple[bool, str, str] | None = None

    def progress(self, step: int, total: int, loss: float, epoch: float, secs: float) -> None:
        if self.step is not None and step >= self.step:
            self.stop.requested = True

    def finished(self, succeeded: bool, reason: str, message: str, adapter_uri: str | None) -> None:
        self.finished_with = (succeeded, reason, message)


def config(uid: str | None, learning_rate: float, generation: int = 1) -> TrainerConfig:
    body = spec(BUCKET, maxSteps=STEPS, checkpointSteps=4, learningRate=learning_rate)
    return TrainerConfig(
        resource=ResourceRef(namespace="ns", name="dictation", uid=uid, generation=generation),
        spec=WhisperFineTuneSpec.model_validate(body),
        report_status=False,
    )


def attempt(cfg: TrainerConfig, work: Path, stop_at: int | None = None) -> Any:
    stop = StopRequest()
    reporter = StopAt(stop, stop_at)
    result = run(cfg, reporter, work, stop)
    return result, reporter


def keys(s3: Any, prefix: str) -> set[str]:
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {o["Key"][len(prefix) :] for o in listing}


def read(s3: Any, key: str) -> str:
    return str(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode())


@pytest.fixture(scope="module")
def staged(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str
) -> None:
    mp = pytest.MonkeyPatch()
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": s3_endpoint}.items():  # fmt: skip
        mp.setenv(k, v)
    stage_s3(boto3.client("s3"), tmp_path_factory.mktemp("stage"), tiny_model_dir, BUCKET, 8)
    mp.undo()


def test_recreated_resource_trains_from_zero_and_again_after_success(
    aws_env: str, staged: None, tmp_path: Path
) -> None:
    s3 = boto3.client("s3")
    # Incarnation A, learning rate 1e-2: stopped (SIGTERM) after its checkpoint at step 4.
    a = config("uid-a", 1e-2)
    with pytest.raises(Preempted):
        attempt(a, tmp_path / "a", stop_at=5)
    a_prefix = a.run_output_uri.removeprefix(f"s3://{BUCKET}/")
    assert "checkpoints/latest.json" in keys(s3, a_prefix)
    assert "/uid-a/generation-1/" in a.run_output_uri

    # Deleted, created again under the same name (uid B) with another rate: from step 0.
    b = config("uid-b", 3e-3)
    result, reporter = attempt(b, tmp_path / "b")
    assert b.run_output_uri != a.run_output_uri and "/uid-b/generation-1/" in b.run_output_uri
    assert result.metrics is not None
    assert result.metrics.resumed_from is None and result.metrics.steps == STEPS
    assert len(result.metrics.loss_curve) == STEPS
    b_prefix = b.run_output_uri.removeprefix(f"s3://{BUCKET}/")
    card = read(s3, b_prefix + "README.md")
    assert "learning rate: 0.003" in card and "uid-b" in card and spec_hash(b.spec) in card
    assert "resumed" not in card
    record = json.loads(read(s3, b_prefix + "_SUCCESS"))
    assert record == {"namespace": "ns", "name": "dictation", "uid": "uid-b", "generation": 1,
                      "specHash": spec_hash(b.spec)}  # fmt: skip
    assert json.loads(read(s3, b_prefix + "metrics.json"))["run"] == record
    assert "checkpoints/latest.json" in keys(s3, a_prefix)  # A's folder is A's: untouched

    # Deleted after success and created again (uid C), same spec: trains again, not refused.
    c = config("uid-c", 3e-3)
    result, reporter = attempt(c, tmp_path / "c")
    assert not result.already_finished and result.metrics is not None
    assert result.metrics.steps == STEPS
    assert reporter.finished_with is not None and reporter.finished_with[0]
    assert "_SUCCESS" in keys(s3, c.run_output_uri.removeprefix(f"s3://{BUCKET}/"))

    # The same run once more (a Job re-created after its TTL removed the finished one, or a
    # pod that died after writing the results): succeeds at once, trains nothing.
    again, reporter = attempt(c, tmp_path / "c-again")
    assert again.already_finished and again.run_uri == c.run_output_uri
    assert reporter.finished_with is not None
    succeeded, reason, message = reporter.finished_with
    assert succeeded and reason == Reason.COMPLETED and "nothing was trained again" in message
    assert not (tmp_path / "c-again" / "data").exists()  # not even the data was prepared


def test_a_checkpoint_of_another_spec_is_never_resumed(
    aws_env: str, staged: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`wft train` has no uid: two specs of one name and generation share a folder. The
    checkpoint records its spec's hash, and a different spec starts at step 0."""
    s3 = boto3.client("s3")
    first = config(None, 1e-2, generation=7)
    with pytest.raises(Preempted):
        attempt(first, tmp_path / "first", stop_at=5)
    prefix = first.run_output_uri.removeprefix(f"s3://{BUCKET}/")
    pointer = json.loads(read(s3, prefix + "checkpoints/latest.json"))
    assert 4 <= pointer["step"] < STEPS and pointer["specHash"] == spec_hash(first.spec)

    other = config(None, 5e-3, generation=7)
    assert other.run_output_uri == first.run_output_uri
    with caplog.at_level(logging.WARNING, logger="wft_trainer.checkpoint"):
        result, _ = attempt(other, tmp_path / "other")
    assert result.metrics is not None and result.metrics.resumed_from is None
    assert len(result.metrics.loss_curve) == STEPS
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "made by another spec" in warned and "training starts at step 0" in warned

    # The folder now holds the other spec's finished run: the first spec is refused for good,
    # with advice that works for `wft train` (each generation has its own folder).
    with pytest.raises(TrainerFailure) as err:
        attempt(first, tmp_path / "refused")
    assert err.value.reason == Reason.OUTPUT_EXISTS and err.value.reason in PERMANENT_REASONS
    assert "already holds a finished run of another spec" in err.value.message
    assert "metadata.generation" in err.value.message
    assert spec_hash(first.spec) in err.value.message


def test_the_advice_for_a_cluster_run_is_a_new_generation(aws_env: str, staged: None) -> None:
    """In a cluster each generation trains into its own folder; what _SUCCESS there says about
    another run (only a hand-made folder could) is refused, and the advice is a spec change."""
    s3 = boto3.client("s3")
    cfg = config("uid-z", 1e-2, generation=3)
    key = cfg.run_output_uri.removeprefix(f"s3://{BUCKET}/") + "_SUCCESS"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"")  # a finished run that recorded nothing
    with pytest.raises(TrainerFailure) as err:
        run(cfg, Reporter(), Path("/nonexistent"))
    assert err.value.reason == Reason.OUTPUT_EXISTS
    assert "spec.retrainNonce" in err.value.message and "new generation" in err.value.message
