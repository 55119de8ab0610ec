"""The real kubectl against `wft up`'s cluster with the resources a careless or hostile user
writes (issue 17): the API server refuses each at admission with the field named, as
`wft validate` does, stores nothing, and never repeats a secret in its answer."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl is not installed"),
]
ROOT = Path(__file__).resolve().parents[2]
MINIMAL = ROOT / "examples" / "minimal.yaml"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from wft_local.stack import LocalStack

    with LocalStack(tmp_path_factory.mktemp("hostile"), with_operator=False) as running:
        yield running


def kubectl(stack: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(stack.kubeconfig_path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
        check=False,
    )


def wft_validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wft_cli", "validate", "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def resource(tmp_path: Path, name: str, text: str) -> Path:
    """minimal.yaml renamed, with `text` (YAML, indented as under spec:) added to its spec."""
    body = yaml.safe_load(MINIMAL.read_text())
    body["metadata"]["name"] = name
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False) + text)
    return path


CASES = [
    # (name, spec text as the user typed it, field named, words of the message)
    ("max-steps-1e20", "  training:\n    maxSteps: 100000000000000000000\n",
     "spec.training.maxSteps", "64-bit integer"),
    ("max-steps-float", "  training:\n    maxSteps: 1e20\n", "spec.training.maxSteps", "integer"),
    ("deadline-1e19", "  activeDeadlineSeconds: 10000000000000000000\n",
     "spec.activeDeadlineSeconds", "64-bit integer"),
    ("ttl-int32", "  ttlSecondsAfterFinished: 2147483648\n", "spec.ttlSecondsAfterFinished",
     "at most 2147483647"),
    ("endpoint-credentials", "  storage:\n    endpoint: http://AKIAEXAMPLE:TopSecret42@minio:9000\n",
     "spec.storage.endpoint", "must not hold credentials"),
    ("endpoint-scheme", "  storage:\n    endpoint: ftp://minio:21\n", "spec.storage.endpoint",
     "http:// or https://"),
    ("endpoint-no-host", "  storage:\n    endpoint: 'http://:9000/'\n", "spec.storage.endpoint",
     "with a host"),
    ("dataset-dot-dot", "  storage: {}\n", "spec.dataset.uri", "'..' path segments"),
    ("manifest-dot-dot", "  storage: {}\n", "spec.dataset.manifest", "'..' path segments"),
    ("toleration-empty-key-equal", "  resources:\n    tolerations: [{value: gpu}]\n",
     "spec.resources.tolerations[0]", "operator must be Exists"),
    ("node-selector-too-many", "  resources:\n    nodeSelector: {"
     + ", ".join(f"k{i}: v" for i in range(65)) + "}\n",
     "spec.resources.nodeSelector", "at most 64"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "text", "field", "words"), CASES, ids=[c[0] for c in CASES])
def test_kubectl_and_wft_validate_refuse_it_alike(
    stack: Any, tmp_path: Path, name: str, text: str, field: str, words: str
) -> None:
    path = resource(tmp_path, name, text)
    if name == "dataset-dot-dot":
        path.write_text(path.read_text().replace("call-center/v3/", "call-center/../v3/"))
    if name == "manifest-dot-dot":
        body = yaml.safe_load(path.read_text())
        body["spec"]["dataset"]["manifest"] = "../other-team/train.jsonl"
        path.write_text(yaml.safe_dump(body))
    applied = kubectl(stack, "apply", "-f", str(path))
    assert applied.returncode == 1, applied.stdout
    assert field in applied.stderr and words in applied.stderr, applied.stderr
    assert "TopSecret42" not in applied.stderr
    assert kubectl(stack, "get", "wft", name).returncode == 1  # nothing stored
    validated = wft_validate(path)
    assert validated.returncode == 1
    assert f"{field}: " in validated.stderr and words in validated.stderr, validated.stderr
    assert "TopSecret42" not in validated.stderr and "Traceback" not in validated.stderr


def test_kubectl_refuses_a_billion_laughs_file_and_so_does_wft(stack: Any, tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join(lines) + "\n")
    applied = kubectl(stack, "apply", "-f", str(path))
    assert applied.returncode == 1  # kubectl's own reader: "excessive aliasing"
    validated = wft_validate(path)
    assert validated.returncode == 1 and "excessive aliasing" in validated.stderr
