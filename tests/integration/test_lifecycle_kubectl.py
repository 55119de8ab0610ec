"""A run's lifecycle where a user looks, with the real kubectl against `wft up`'s stack (the
real operator, the local Job runner as kubelet and Job controller, the real trainer):
`kubectl get`, `kubectl describe` (conditions and Events), `kubectl wait`.

A resource whose `credentialsSecret` does not exist: within 30 s the status names the missing
Secret (the pod cannot start; the Job has not failed) and a Warning Event says so; once the
Secret is created the same pod starts, the trainer finds no data and fails for a cause no
retry fixes: phase Failed, the Failed condition and a Warning Event name the reason, and the
trainer's own report (`status.trainer`) says Failed in its words.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl is not installed"),
]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from wft_local.stack import LocalStack

    with LocalStack(tmp_path_factory.mktemp("lifecycle")) as running:
        yield running


def kubectl(stack: Any, *args: str, ok: bool = True) -> str:
    done = subprocess.run(
        ["kubectl", "--kubeconfig", str(stack.kubeconfig_path), *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=dict(os.environ),
        check=False,
    )
    if ok:
        assert done.returncode == 0, done.stderr
    return done.stdout


def status(stack: Any, name: str) -> dict[str, Any]:
    return dict(json.loads(kubectl(stack, "get", "wft", name, "-o", "json")).get("status") or {})


def wait_for(check: Any, what: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_a_missing_secret_then_a_failure_as_kubectl_shows_them(stack: Any, tmp_path: Path) -> None:
    stack.s3_client().create_bucket(Bucket="lifecycle-data")  # exists, but holds no audio
    body = yaml.safe_load((ROOT / "examples" / "minimal.yaml").read_text())
    body["metadata"]["name"] = "lifecycle"
    body["spec"]["dataset"]["uri"] = "s3://lifecycle-data/set/"
    body["spec"]["baseModel"] = "s3://lifecycle-data/models/none/"  # no hub: it fails fast
    body["spec"]["storage"] = {"credentialsSecret": "s3-credentials"}
    path = tmp_path / "lifecycle.yaml"
    path.write_text(yaml.safe_dump(body))
    applied = time.monotonic()
    kubectl(stack, "apply", "-f", str(path))

    missing = 'secret "s3-credentials" not found'
    wait_for(lambda: missing in (status(stack, "lifecycle").get("message") or ""), missing, 30)
    assert time.monotonic() - applied < 30
    now = status(stack, "lifecycle")
    assert now["phase"] == "Pending"
    running = next(c for c in now["conditions"] if c["type"] == "Running")
    assert (running["status"], running["reason"]) == ("False", "CreateContainerConfigError")
    assert "Failed" not in {c["type"] for c in now["conditions"]}
    described = wait_for(
        lambda: (
            (out := kubectl(stack, "describe", "wft", "lifecycle"))
            and "CreateContainerConfigError" in out.split("Events:")[-1]
            and out
        ),
        "the Warning Event in kubectl describe",
        30,
    )
    events = described.split("Events:")[-1]
    assert "Normal" in events and "JobCreated" in events and "wft.dev/operator" in events
    assert "Warning" in events and missing in events

    kubectl(
        stack,
        "create",
        "secret",
        "generic",
        "s3-credentials",
        "--from-literal=AWS_ACCESS_KEY_ID=wft-local",
        "--from-literal=AWS_SECRET_ACCESS_KEY=wft-local-secret",
    )
    kubectl(stack, "wait", "--for=condition=Failed", "wft/lifecycle", "--timeout=150s")
    final = status(stack, "lifecycle")
    failed = next(c for c in final["conditions"] if c["type"] == "Failed")
    assert final["phase"] == "Failed" and failed["status"] == "True"
    assert "s3://lifecycle-data/" in final["message"], final
    assert {c["type"] for c in final["conditions"] if c["status"] == "True"} == {
        "Accepted",
        "Failed",
    }
    trainer = final["trainer"]
    assert (trainer["stage"], trainer["generation"]) == ("Failed", 1)
    assert trainer["pod"].startswith(final["jobName"] + "-")
    events = wait_for(
        lambda: (
            (out := kubectl(stack, "describe", "wft", "lifecycle").split("Events:")[-1])
            and failed["reason"] in out
            and out
        ),
        f"a Warning {failed['reason']} Event",
        30,
    )
    assert events.count("JobCreated") == 1  # one per Job, not one per resync
    table = kubectl(stack, "get", "events", "--field-selector", "involvedObject.name=lifecycle")
    assert failed["reason"] in table and "Warning" in table


def test_the_largest_spec_runs(stack: Any, tmp_path: Path) -> None:
    """The config is a mounted file (a ConfigMap per Job), not an environment variable, which
    the kernel refuses to exec beyond 128 KiB: with the largest spec the API admits the trainer
    starts, reads it and gets as far as the data (there is none: it fails for that, with the
    bucket named)."""
    from tests.unit.test_render import largest_resources

    stack.s3_client().create_bucket(Bucket="big-data")
    body = yaml.safe_load((ROOT / "examples" / "minimal.yaml").read_text())
    body["metadata"]["name"] = "big"
    body["spec"]["dataset"]["uri"] = "s3://big-data/set/"
    body["spec"]["baseModel"] = "s3://big-data/models/none/"
    body["spec"]["resources"] = largest_resources()  # the local runner places no pods
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(body))
    assert path.stat().st_size > 40 * 1024
    kubectl(stack, "create", "-f", str(path))  # apply's last-applied annotation would be too big
    kubectl(stack, "wait", "--for=condition=Failed", "wft/big", "--timeout=150s")
    final = status(stack, "big")
    assert "s3://big-data/" in final["message"], final
    assert final["trainer"]["stage"] == "Failed"  # the trainer ran and reported
    config_map = json.loads(kubectl(stack, "get", "configmap", final["jobName"], "-o", "json"))
    assert len(config_map["data"]["config.json"]) > 40 * 1024
