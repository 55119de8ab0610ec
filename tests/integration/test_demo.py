"""`wft demo` end to end, shortened: speech and model into S3, the operator, the Job runner and
the real trainer, until the resource is Succeeded with WER figures and the adapter in S3."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.skipif(not shutil.which("espeak-ng"), reason="espeak-ng is not installed")
def test_demo_reaches_succeeded_with_the_adapter_in_s3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from wft_cli.commands import demo
    from wft_local import stack as stack_module

    seen: dict[str, Any] = {}
    original_stop = stack_module.LocalStack.stop

    def inspect_then_stop(self: stack_module.LocalStack) -> None:
        # Look at the cluster and S3 as the demo leaves them, before they go away.
        try:
            if getattr(self, "kube", None) is not None and self.kube.store is not None:
                from kubernetes import client

                api = client.CustomObjectsApi(self.kube.api_client())
                seen["resource"] = api.get_namespaced_custom_object(
                    "wft.dev", "v1alpha1", "default", "whisperfinetunes", "demo"
                )
                s3 = self.s3_client()
                listing = s3.list_objects_v2(Bucket="wft-demo", Prefix="adapters/")
                seen["keys"] = {o["Key"] for o in listing.get("Contents", [])}
        finally:
            original_stop(self)

    monkeypatch.setattr(stack_module.LocalStack, "stop", inspect_then_stop)
    args = argparse.Namespace(
        steps=12, samples=15, keep_running=False, workdir=str(tmp_path), timeout=400.0
    )
    assert demo.run(args) == 0
    out = capsys.readouterr().out

    status = seen["resource"]["status"]
    assert status["phase"] == "Succeeded"
    assert status["metrics"]["baselineWer"] >= 0 and status["metrics"]["wer"] >= 0
    assert status["adapterUri"].startswith("s3://wft-demo/adapters/default/demo/generation-1/")
    run = "adapters/default/demo/generation-1/"
    for name in ("adapter_config.json", "adapter_model.safetensors", "metrics.json", "_SUCCESS"):
        assert any(k.startswith(run) and k.endswith(name) for k in seen["keys"]), name
    # The summary a user reads names the same figures.
    assert "wft demo: Succeeded" in out and status["adapterUri"] in out
    assert "WER" in out and "trainer train" in out  # stage times from metrics.json


@pytest.mark.skipif(not shutil.which("espeak-ng"), reason="espeak-ng is not installed")
def test_a_failed_run_exits_non_zero_with_the_cause_and_the_pod_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from wft_cli.commands import demo

    render = demo.resource

    def missing_model(uris: dict[str, str], steps: int) -> dict[str, Any]:
        body = render(uris, steps)
        body["spec"]["baseModel"] = "s3://wft-demo/models/missing/"
        # moto keeps its buckets per process: stay clear of the other test's finished run.
        body["spec"]["output"]["uri"] = "s3://wft-demo/failed-runs/"
        return body

    monkeypatch.setattr(demo, "resource", missing_model)
    args = argparse.Namespace(
        steps=5, samples=5, keep_running=False, workdir=str(tmp_path), timeout=300.0
    )
    assert demo.run(args) == 1
    out = capsys.readouterr().out
    assert "wft demo: Failed" in out
    assert "s3://wft-demo/models/missing/" in out  # the status message names the cause
    assert ".log:" in out  # and the trainer pod's log tail follows
