"""Checkpoint retention against moto's S3 server: each new checkpoint replaces the previous one,
success removes them all, and a store that may not delete only costs a warning."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import boto3
import pytest
from wft_api.conditions import Reason
from wft_trainer.checkpoint import CheckpointStore
from wft_trainer.errors import TrainerFailure
from wft_trainer.storage import S3Store

pytestmark = pytest.mark.integration

BUCKET = "ckpt"
RUN = f"s3://{BUCKET}/out/ns/demo/generation-1/"


class Adapter:
    """What CheckpointStore needs of a PeftModel: save_pretrained writes the adapter files."""

    def save_pretrained(self, folder: str) -> None:
        (Path(folder) / "adapter_model.safetensors").write_bytes(b"\0" * 64)


def keys(s3: Any, bucket: str = BUCKET) -> list[str]:
    listing = s3.list_objects_v2(Bucket=bucket, Prefix="out/").get("Contents", [])
    return sorted(o["Key"] for o in listing)


def test_keeps_only_the_newest_and_clears_on_success(aws_env: str, tmp_path: Path) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="out/ns/demo/generation-1/checkpoints/step-2/x", Body=b"old")
    store = CheckpointStore(
        S3Store.from_spec(cache_dir=tmp_path / "cache"), RUN, tmp_path / "local"
    )

    for step in (5, 10):
        store.save(step, Adapter(), {"step": step}, {})
    assert {k.split("/")[5] for k in keys(s3)} == {"step-10", "latest.json"}  # step-2 too
    assert not list((tmp_path / "local").iterdir())  # staged copies are gone from the disk
    assert store.latest() is not None and store.latest().step == 10  # type: ignore[union-attr]

    s3.put_object(Bucket=BUCKET, Key="out/ns/demo/generation-1/_SUCCESS", Body=b"")
    store.clear()
    assert keys(s3) == ["out/ns/demo/generation-1/_SUCCESS"]  # the result itself is untouched
    assert store.latest() is None


def test_delete_prefix_pages_past_a_thousand_keys(aws_env: str, tmp_path: Path) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="many")  # the S3 server lives for the session: a bucket of its own
    for i in range(1003):
        s3.put_object(Bucket="many", Key=f"out/many/{i:04d}", Body=b"")
    s3.put_object(Bucket="many", Key="out/manyother", Body=b"")
    store = S3Store.from_spec(cache_dir=tmp_path / "cache")
    assert store.delete_prefix("s3://many/out/many/") == 1003
    assert keys(s3, bucket="many") == ["out/manyother"]


class NoDeleteStore(S3Store):
    """A bucket policy without s3:DeleteObject. moto's server does not enforce policies, so the
    refusal is raised here, as S3Store would translate a real AccessDenied."""

    def delete_prefix(self, prefix_uri: str) -> int:
        self.attempts = getattr(self, "attempts", 0) + 1
        raise TrainerFailure(Reason.S3_ACCESS_DENIED, f"access denied deleting {prefix_uri}")


def test_no_delete_permission_warns_once_and_keeps_training(
    aws_env: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="nodelete")
    run = "s3://nodelete/out/ns/demo/generation-1/"
    backend = NoDeleteStore.from_spec(cache_dir=tmp_path / "cache")
    store = CheckpointStore(backend, run, tmp_path / "local")
    with caplog.at_level(logging.WARNING, logger="wft_trainer.checkpoint"):
        for step in (5, 10, 15):
            store.save(step, Adapter(), {"step": step}, {})
        store.clear()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"old checkpoints stay in S3: access denied deleting {run}checkpoints/step-5/"
    ]
    assert backend.attempts == 1
    assert store.latest().step == 15  # type: ignore[union-attr]
