"""The real kubectl (1.32) and helm (3.6.2) against `wft up`'s cluster, as the docs print them.

No flags: client-side validation on (the OpenAPI documents), protobuf bodies for built-in
kinds, server-side apply, tables, the chart installed and removed; and no way in without the
kubeconfig's token.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl is not installed"),
]
ROOT = Path(__file__).resolve().parents[2]
MINIMAL = ROOT / "examples" / "minimal.yaml"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from wft_local.stack import LocalStack

    with LocalStack(tmp_path_factory.mktemp("kubectl"), with_operator=False) as running:
        yield running


def kubectl(stack: object, *args: str, ok: bool = True, **env: str) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    run = subprocess.run(
        ["kubectl", "--kubeconfig", str(stack.kubeconfig_path), *args],  # type: ignore[attr-defined]
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
        check=False,
    )
    if ok:
        assert run.returncode == 0, run.stderr
    return run


def resource(tmp_path: Path, name: str, **spec: object) -> Path:
    body = yaml.safe_load(MINIMAL.read_text())
    body["metadata"]["name"] = name
    body["spec"].update(spec)
    path = tmp_path / f"{name}-{len(list(tmp_path.iterdir()))}.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def test_apply_edit_and_explain_without_flags(stack: object, tmp_path: Path) -> None:
    assert "created" in kubectl(stack, "apply", "-f", str(MINIMAL)).stdout
    typo = resource(tmp_path, "typo", training={"lr": 0.1})
    refused = kubectl(stack, "apply", "-f", str(typo), ok=False)
    assert refused.returncode == 1
    assert "spec.training.lr: unknown field" in refused.stderr and "learningRate" in refused.stderr
    editor = tmp_path / "editor"
    editor.write_text('#!/bin/sh\nsed -i "s#baseModel: .*#baseModel: openai/whisper-small#" "$1"\n')
    editor.chmod(0o755)
    edited = kubectl(stack, "edit", "wft", "call-center-en", KUBE_EDITOR=str(editor))
    assert "edited" in edited.stdout
    got = kubectl(stack, "get", "wft", "call-center-en", "-o", "jsonpath={.spec.baseModel}")
    assert got.stdout == "openai/whisper-small"
    explained = kubectl(stack, "explain", "wft.spec.lora").stdout
    assert "LoRA adapter settings" in explained and "targetModules" in explained
    assert (
        "Specifies the number of retries"
        in kubectl(stack, "explain", "job.spec.backoffLimit").stdout
    )


def test_the_create_verbs_the_storage_docs_use(stack: object) -> None:
    kubectl(stack, "create", "namespace", "team-a")
    kubectl(
        stack, "-n", "team-a", "create", "secret", "generic", "s3-credentials",
        "--from-literal=AWS_ACCESS_KEY_ID=AKIA", "--from-literal=AWS_SECRET_ACCESS_KEY=s3cret",
    )  # fmt: skip
    kubectl(stack, "-n", "team-a", "create", "serviceaccount", "speech-trainer")
    kubectl(stack, "-n", "team-a", "create", "configmap", "settings", "--from-literal=a=b")
    kubectl(stack, "-n", "team-a", "create", "role", "reader", "--verb=get", "--resource=pods")
    kubectl(
        stack, "-n", "team-a", "create", "rolebinding", "reader",
        "--role=reader", "--serviceaccount=team-a:speech-trainer",
    )  # fmt: skip
    secret = json.loads(
        kubectl(stack, "-n", "team-a", "get", "secret", "s3-credentials", "-o", "json").stdout
    )
    assert secret["data"]["AWS_SECRET_ACCESS_KEY"] == "czNjcmV0"  # base64 of s3cret
    binding = json.loads(
        kubectl(stack, "-n", "team-a", "get", "rolebinding", "reader", "-o", "json").stdout
    )
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "reader",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "speech-trainer", "namespace": "team-a"}
    ]
    # A kind kubectl would send as protobuf that is not decoded here says how to send it.
    job = kubectl(stack, "create", "job", "j", "--image=busybox", ok=False)
    assert job.returncode == 1 and "send it as JSON" in job.stderr


def test_server_side_apply_owns_fields_and_reports_conflicts(stack: object, tmp_path: Path) -> None:
    path = resource(tmp_path, "ssa")
    assert "serverside-applied" in kubectl(stack, "apply", "--server-side", "-f", str(path)).stdout
    kubectl(stack, "patch", "wft", "ssa", "--type=merge", "-p", '{"spec":{"language":"fr"}}')
    german = resource(tmp_path, "ssa", language="de")
    conflict = kubectl(stack, "apply", "--server-side", "-f", str(german), ok=False)
    assert conflict.returncode == 1
    assert (
        'conflict with "kubectl-patch"' in conflict.stderr and ".spec.language" in conflict.stderr
    )
    kubectl(stack, "apply", "--server-side", "--force-conflicts", "-f", str(german))
    assert kubectl(stack, "get", "wft", "ssa", "-o", "jsonpath={.spec.language}").stdout == "de"
    # Applying again without the field gives it up: the default comes back.
    kubectl(stack, "apply", "--server-side", "-f", str(path))
    assert kubectl(stack, "get", "wft", "ssa", "-o", "jsonpath={.spec.language}").stdout == "en"
    managed = json.loads(
        kubectl(stack, "get", "wft", "ssa", "-o", "json", "--show-managed-fields").stdout
    )["metadata"]["managedFields"]
    assert {m["manager"] for m in managed if m["operation"] == "Apply"} == {"kubectl"}


def test_tables_as_a_cluster_prints_them(stack: object) -> None:
    assert kubectl(stack, "get", "ns").stdout.split("\n")[0].split() == ["NAME", "STATUS", "AGE"]
    kubectl(stack, "create", "secret", "generic", "tabled", "--from-literal=a=b")
    assert kubectl(stack, "get", "secrets").stdout.split("\n")[0].split() == [
        "NAME",
        "TYPE",
        "DATA",
        "AGE",
    ]
    events = kubectl(stack, "get", "events", "-A").stdout  # the Job runner left one or none
    if events.strip():
        assert events.split("\n")[0].split()[:5] == ["NAMESPACE", "LAST", "SEEN", "TYPE", "REASON"]


def test_helm_installs_upgrades_and_uninstalls_the_chart(stack: object, tmp_path: Path) -> None:
    helm = shutil.which("helm") or str(ROOT / ".cache/helm/helm")
    if not os.access(helm, os.X_OK):
        pytest.skip("no helm: make tools")
    env = {
        **os.environ,
        "KUBECONFIG": str(stack.kubeconfig_path),  # type: ignore[attr-defined]
        "HELM_CACHE_HOME": str(tmp_path / "cache"),
        "HELM_CONFIG_HOME": str(tmp_path / "config"),
        "HELM_DATA_HOME": str(tmp_path / "data"),
    }

    def run(*args: str) -> str:
        done = subprocess.run(
            [helm, *args], capture_output=True, text=True, env=env, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    chart = str(ROOT / "charts" / "whisper-finetune")
    run(
        "install",
        "wft",
        chart,
        "-n",
        "wft-system",
        "--create-namespace",
        "--set",
        "crds.install=false",
    )
    listed = kubectl(stack, "-n", "wft-system", "get", "deploy,svc,sa").stdout
    assert (
        "deployment.apps/wft-whisper-finetune" in listed
        and "service/wft-whisper-finetune-metrics" in listed
    )
    run("upgrade", "wft", chart, "-n", "wft-system", "--set", "crds.install=false",
        "--set", "trainer.defaults.cpu=4")  # fmt: skip
    env_of = kubectl(
        stack, "-n", "wft-system", "get", "deploy", "wft-whisper-finetune",
        "-o", "jsonpath={.spec.template.spec.containers[0].env[?(@.name=='WFT_DEFAULT_CPU')].value}",
    ).stdout  # fmt: skip
    assert env_of == "4"
    assert "deployed" in run("list", "-n", "wft-system")
    run("uninstall", "wft", "-n", "wft-system")
    assert "No resources found" in kubectl(stack, "-n", "wft-system", "get", "deploy").stderr


def test_nobody_without_the_token_gets_in(stack: object, tmp_path: Path) -> None:
    config = yaml.safe_load(stack.kubeconfig_path.read_text())  # type: ignore[attr-defined]
    config["users"][0]["user"] = {"token": "guessed"}
    stranger = tmp_path / "stranger"
    stranger.write_text(yaml.safe_dump(config))
    run = subprocess.run(
        ["kubectl", "--kubeconfig", str(stranger), "get", "secrets", "-A"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 1 and "Unauthorized" in run.stderr


def test_the_limits_of_a_real_api_server(stack: object, tmp_path: Path) -> None:
    huge_int = resource(tmp_path, "huge-int", training={"maxSteps": 10**20})
    refused = kubectl(stack, "apply", "-f", str(huge_int), ok=False)
    assert "spec.training.maxSteps" in refused.stderr and "64-bit" in refused.stderr
    labelled = yaml.safe_load(MINIMAL.read_text())
    labelled["metadata"] = {"name": "labelled", "labels": {"team": "x" * 64}}
    path = tmp_path / "labelled.yaml"
    path.write_text(yaml.safe_dump(labelled))
    refused = kubectl(stack, "apply", "-f", str(path), ok=False)
    assert "metadata.labels[team]" in refused.stderr and "63 characters" in refused.stderr
    both = resource(tmp_path, "both", training={"maxSteps": 10, "epochs": 2})
    refused = kubectl(stack, "apply", "-f", str(both), ok=False)  # a CEL rule of the CRD
    assert "set maxSteps or epochs, not both" in refused.stderr
    big = tmp_path / "big.txt"
    big.write_text("x" * 1_700_000)
    refused = kubectl(stack, "create", "configmap", "big", f"--from-file={big}", ok=False)
    assert "1572864" in refused.stderr
