"""Checkpoint uploads survive S3 outages: the real moto S3 server is stopped (its port closed:
connections refused) and started again on the same port, with no mock in between.

- An outage of 15 s during a checkpoint upload costs a delay, not the checkpoint.
- An outage longer than the retries costs that checkpoint only: a warning is logged and said in
  the status message, training goes on, the next checkpoint and the final upload land.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from wft_api import ResourceRef, TrainerConfig, WhisperFineTuneSpec
from wft_trainer import checkpoint, storage
from wft_trainer.checkpoint import CheckpointStore
from wft_trainer.pipeline import StopRequest, run
from wft_trainer.status import Reporter
from wft_trainer.storage import S3Store

from tests.conftest import free_port

from .trainer_fixtures import spec, stage_s3

pytestmark = pytest.mark.integration


class FlakyS3:
    """moto's S3 server on a fixed loopback port that can be taken away and brought back."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server_type = ThreadedMotoServer
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: Any = None
        self.lock = threading.Lock()
        self.start()

    def start(self) -> None:
        with self.lock:
            if self.server is None:
                self.server = self._server_type(
                    ip_address="127.0.0.1", port=self.port, verbose=False
                )
                self.server.start()
                self.back_at = time.monotonic()

    def stop(self) -> None:
        with self.lock:
            if self.server is not None:
                self.server.stop()
                self.server._server.server_close()  # the port closes: connections are refused
                self.server = None

    def outage(self, seconds: float) -> threading.Timer:
        self.stop()
        self.down_at = time.monotonic()
        timer = threading.Timer(seconds, self.start)
        timer.start()
        return timer


@pytest.fixture
def flaky_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[FlakyS3]:
    s3 = FlakyS3()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.url)
    try:
        yield s3
    finally:
        s3.stop()


class Adapter:
    """What CheckpointStore needs of a PeftModel: save_pretrained writes the adapter files."""

    def save_pretrained(self, folder: str) -> None:
        (Path(folder) / "adapter_model.safetensors").write_bytes(b"\0" * 4096)


def latest_step(bucket: str, run: str) -> int:
    key = run.removeprefix(f"s3://{bucket}/") + "checkpoints/latest.json"
    body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    return int(json.loads(body)["step"])


@pytest.mark.parametrize(
    "botocore_attempts",
    [storage.MAX_ATTEMPTS, 2],
    ids=["as-configured", "botocore-retrying-little"],  # the second: the trainer's own retries
)
def test_a_15_second_outage_during_a_checkpoint_costs_a_delay_not_the_checkpoint(
    flaky_s3: FlakyS3,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    botocore_attempts: int,
) -> None:
    monkeypatch.setattr(storage, "MAX_ATTEMPTS", botocore_attempts)
    boto3.client("s3").create_bucket(Bucket="outage")
    run_uri = "s3://outage/out/ns/demo/uid/generation-1/"
    warnings: list[str] = []
    store = CheckpointStore(
        S3Store.from_spec(cache_dir=tmp_path / "cache"),
        run_uri,
        tmp_path / "l",
        "h",
        warnings.append,
    )
    assert store.save(5, Adapter(), {"step": 5}, {}) is not None
    timer = flaky_s3.outage(15.0)
    with caplog.at_level(logging.WARNING, logger="wft_trainer.checkpoint"):
        uri = store.save(10, Adapter(), {"step": 10}, {})
    done = time.monotonic()
    timer.join()
    assert done >= flaky_s3.back_at > flaky_s3.down_at  # it waited the outage out
    assert uri == f"{run_uri}checkpoints/step-10/"
    assert store.saved == 10 and store.skipped == [] and warnings == []
    assert latest_step("outage", run_uri) == 10
    if botocore_attempts == 2:
        retried = [r.getMessage() for r in caplog.records if "trying again" in r.getMessage()]
        assert retried and "uploading the checkpoint at step 10 failed" in retried[0]


def test_an_outage_longer_than_the_retries_skips_that_checkpoint_only(
    flaky_s3: FlakyS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Short budgets, so that the test need not outlast minutes of retries.
    monkeypatch.setattr(storage, "MAX_ATTEMPTS", 2)
    monkeypatch.setattr(checkpoint, "UPLOAD_ATTEMPTS", 2)
    monkeypatch.setattr(checkpoint, "UPLOAD_RETRY_DELAY_S", 0.2)
    boto3.client("s3").create_bucket(Bucket="long-outage")
    run_uri = "s3://long-outage/out/ns/demo/uid/generation-1/"
    warnings: list[str] = []
    store = CheckpointStore(
        S3Store.from_spec(cache_dir=tmp_path / "cache"),
        run_uri,
        tmp_path / "l",
        "h",
        warnings.append,
    )
    assert store.save(5, Adapter(), {"step": 5}, {}) is not None
    flaky_s3.stop()
    assert store.save(10, Adapter(), {"step": 10}, {}) is None
    assert store.skipped == [10] and store.saved == 5
    (warning,) = warnings
    assert "checkpoint at step 10 not saved" in warning and "training goes on" in warning
    assert "resume from step 5" in warning and "cannot reach the S3 endpoint" in warning
    assert not list((tmp_path / "l").iterdir())  # no staged copy left on the pod's disk
    flaky_s3.start()
    assert latest_step("long-outage", run_uri) == 5  # the previous checkpoint still stands
    assert store.save(15, Adapter(), {"step": 15}, {}) is not None
    assert latest_step("long-outage", run_uri) == 15
    assert store.latest() is not None and store.latest().step == 15  # type: ignore[union-attr]


class Watch(Reporter):
    """Takes S3 away when training reaches `at` (for `seconds`, or until step `back`) and
    records what the status would say."""

    def __init__(self, s3: FlakyS3, at: int, seconds: float, back: int | None = None) -> None:
        self.s3, self.at, self.seconds, self.back = s3, at, seconds, back
        self.messages: list[tuple[str, str]] = []
        self.timer: threading.Timer | None = None
        self.outcome: tuple[bool, str, str | None] | None = None

    def stage(self, phase: str, message: str) -> None:
        self.messages.append((phase, message))

    def progress(self, step: int, total: int, loss: float, epoch: float, secs: float) -> None:
        if step == self.at and self.timer is None:
            self.timer = self.s3.outage(self.seconds)
        if step == self.back:
            self.s3.start()  # back before the next checkpoint, however fast the steps are

    def finished(self, succeeded: bool, reason: str, message: str, adapter_uri: str | None) -> None:
        self.outcome = (succeeded, reason, adapter_uri)


def test_a_run_survives_an_outage_that_costs_a_checkpoint(
    flaky_s3: FlakyS3,
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The whole trainer: S3 goes away as the checkpoint of step 4 is due, longer than its
    retries; the run warns in its status message, saves step 8, and publishes its results."""
    s3 = boto3.client("s3")
    stage_s3(s3, tmp_path, tiny_model_dir, "outage-run", n_train=8)
    monkeypatch.setattr(storage, "MAX_ATTEMPTS", 2)
    monkeypatch.setattr(checkpoint, "UPLOAD_ATTEMPTS", 2)
    monkeypatch.setattr(checkpoint, "UPLOAD_RETRY_DELAY_S", 0.2)
    config = TrainerConfig(
        resource=ResourceRef(namespace="ns", name="outage", uid="u-1"),
        spec=WhisperFineTuneSpec.model_validate(
            spec("outage-run", maxSteps=12, checkpointSteps=4, learningRate=1e-2)
        ),
        report_status=False,
    )
    # Down from step 4 (its checkpoint is due) to step 6: a fixed number of steps, not seconds,
    # so that a fast machine does not publish while S3 is still away.
    reporter = Watch(flaky_s3, at=4, seconds=600.0, back=6)
    with caplog.at_level(logging.INFO, logger="wft_trainer.checkpoint"):
        result = run(config, reporter, tmp_path / "work", StopRequest())
    assert reporter.timer is not None
    reporter.timer.cancel()
    assert reporter.outcome == (True, "Completed", config.run_output_uri)
    skipped = [m for phase, m in reporter.messages if "not saved" in m]
    assert len(skipped) == 1 and skipped[0].startswith("checkpoint at step 4 not saved")
    assert ("Training", skipped[0]) in reporter.messages  # the status message says it
    logged = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("checkpoint at step 4 not saved") for m in logged)
    assert any(m.startswith("checkpoint at step 8 saved to") for m in logged)
    assert result.metrics is not None
    assert result.metrics.steps == 12 and result.metrics.resumed_from is None
    prefix = config.run_output_uri.removeprefix("s3://outage-run/")
    keys = {o["Key"][len(prefix) :] for o in s3.list_objects_v2(Bucket="outage-run",
            Prefix=prefix)["Contents"]}  # fmt: skip
    assert {"_SUCCESS", "metrics.json", "adapter_model.safetensors"} <= keys
    assert not any(k.startswith("checkpoints/") for k in keys)  # cleared after success
