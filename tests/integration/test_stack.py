"""`wft up`'s stack: the real operator and the local Job runner against the embedded API and S3."""

from __future__ import annotations

import os
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


def test_apply_runs_the_trainer_against_the_embedded_s3(tmp_path: Path) -> None:
    with LocalStack(tmp_path) as stack:
        operator_pid = stack._operator.pid if stack._operator else 0
        api_client = client.ApiClient(client.Configuration(host=stack.kube.url))
        custom, batch = client.CustomObjectsApi(api_client), client.BatchV1Api(api_client)
        stack.s3_client().create_bucket(Bucket="speech-data")  # exists, but holds no audio
        body = yaml.safe_load(EXAMPLE.read_text())
        # An s3:// model keeps the trainer off the (unreachable) hub, so it fails fast.
        body["spec"]["baseModel"] = "s3://speech-data/models/none/"
        custom.create_namespaced_custom_object(
            "wft.dev", "v1alpha1", "default", "whisperfinetunes", body
        )
        job = wait_for(lambda: batch.list_namespaced_job("default").items, 30)[0]
        assert job.metadata.owner_references[0].kind == "WhisperFineTune"

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
