"""The platform's guard-rails (operator settings WFT_*, `render.guard_rail_problems`) and the
endpoint and URI rules (issue 17): each refusal names the field, the value and the rule; the
defaults are the safe ones; `wft validate` and `wft render` apply them as the operator does.
The operator's own status for them: tests/integration/test_guard_rails.py."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from wft_api import uris
from wft_api.v1alpha1 import WhisperFineTuneSpec
from wft_api.validation import validate_object
from wft_operator.render import guard_rail_problems, image_allowed, image_repository
from wft_operator.settings import Settings, SettingsError

from .test_api_validate import BASE, with_

TRAINER = "registry.example:5000/wft/trainer:1.2"


def spec(**fields: Any) -> WhisperFineTuneSpec:
    body = {"dataset": {"uri": "s3://data-bucket/x/"}, "output": {"uri": "s3://out-bucket/y/"}}
    return WhisperFineTuneSpec.model_validate({**body, **fields})


def problems(settings: Settings | None = None, **fields: Any) -> list[str]:
    return guard_rail_problems(spec(**fields), settings or Settings(trainer_image=TRAINER))


# --- images ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "ok"),
    [
        (TRAINER, True),
        ("registry.example:5000/wft/trainer:1.3-debug", True),
        ("registry.example:5000/wft/trainer@sha256:" + "a" * 64, True),
        ("registry.example:5000/wft/trainer-evil:1", False),
        ("registry.example:5000/wft/other:1.2", False),
        ("docker.io/library/python:3.11", False),
    ],
)
def test_by_default_only_the_trainer_images_repository_runs(image: str, ok: bool) -> None:
    found = problems(image=image)
    assert (found == []) is ok, found
    if not ok:
        assert found[0].startswith(f"spec.image: '{image}': ")
        assert "WFT_ALLOWED_IMAGE_PREFIXES" in found[0] and TRAINER in found[0]


def test_image_prefixes_end_at_a_boundary() -> None:
    settings = Settings(trainer_image=TRAINER, allowed_image_prefixes=["reg.example/speech"])
    assert image_allowed("reg.example/speech/trainer:1", settings)
    assert image_allowed("reg.example/speech:1", settings)
    assert not image_allowed("reg.example/speech-evil/trainer:1", settings)
    assert not image_allowed(TRAINER, settings)  # a list replaces the default
    anything = Settings(allowed_image_prefixes=["*"])
    assert image_allowed("docker.io/anyone/anything:latest", anything)
    assert image_repository("reg:5000/a/b:1@sha256:00") == "reg:5000/a/b"
    assert image_repository("python") == "python"


# --- endpoints ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://169.254.170.2/",  # ECS task metadata
        "http://2852039166/",  # 169.254.169.254 as one decimal number
        "http://0xa9fea9fe/",
        "http://0251.0376.0251.0376/",
        "http://[fd00:ec2::254]/",
        "http://[::ffff:169.254.169.254]/",
        "http://[fe80::1]:9000/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://METADATA.google.internal./",
        "http://100.100.100.200/",  # Alibaba Cloud
    ],
)
def test_link_local_and_metadata_endpoints_are_refused_unless_allowed(endpoint: str) -> None:
    (found,) = problems(storage={"endpoint": endpoint})
    assert found.startswith("spec.storage.endpoint: ")
    assert "metadata" in found and "WFT_ALLOW_LINK_LOCAL_ENDPOINTS" in found
    allowed = Settings(allow_link_local_endpoints=True)
    assert problems(allowed, storage={"endpoint": endpoint}) == []


@pytest.mark.parametrize(
    "endpoint",
    ["http://minio.storage:9000", "https://s3.eu-central-1.amazonaws.com", "http://10.0.0.7/",
     "http://127.0.0.1:9000", "http://[2001:db8::1]/"],
)  # fmt: skip
def test_ordinary_endpoints_pass_by_default(endpoint: str) -> None:
    assert problems(storage={"endpoint": endpoint}) == []


def test_an_endpoint_list_allows_exactly_those() -> None:
    settings = Settings(
        allowed_storage_endpoints=["http://minio.storage:9000", "https://s3.example/tenant-a"]
    )
    ok = ["http://minio.storage:9000", "http://minio.storage:9000/", "http://MINIO.storage:9000",
          "https://s3.example/tenant-a", "https://s3.example:443/tenant-a/x"]  # fmt: skip
    bad = ["https://minio.storage:9000", "http://minio.storage:9001", "http://minio.storage",
           "https://s3.example/tenant-ab", "https://s3.example/", "http://evil.example/"]  # fmt: skip
    for endpoint in ok:
        assert problems(settings, storage={"endpoint": endpoint}) == [], endpoint
    for endpoint in bad:
        (found,) = problems(settings, storage={"endpoint": endpoint})
        assert "WFT_ALLOWED_STORAGE_ENDPOINTS" in found, endpoint
    assert problems(settings) == []  # no endpoint: AWS
    listed = Settings(allowed_storage_endpoints=["http://169.254.169.254"])
    assert problems(listed, storage={"endpoint": "http://169.254.169.254/"}) == []


@pytest.mark.parametrize(
    ("endpoint", "word"),
    [
        ("http://AKIAEXAMPLE:TopSecret42@minio:9000", "must not hold credentials"),
        ("https://TopSecret42@minio", "must not hold credentials"),
        ("ftp://minio:21/", "http:// or https://"),
        ("minio.storage:9000", "http:// or https://"),
        ("http://", "with a host"),
        ("http://:9000", "with a host"),
        ("http://minio:99999", "with a host"),
        ("http://minio/?X-Amz-Credential=TopSecret42", "no spaces, query or fragment"),
        ("http://minio storage", "no spaces"),
    ],
)
def test_endpoint_form_is_checked_without_repeating_a_secret(
    tmp_path: Path, endpoint: str, word: str
) -> None:
    found, resource = validate_object(with_("spec.storage", {"endpoint": endpoint}))
    assert resource is None
    (problem,) = [p for p in found if p.path == "spec.storage.endpoint"]
    assert word in problem.message and "TopSecret42" not in str(problem)
    path = tmp_path / "finetune.yaml"
    path.write_text(yaml.safe_dump(with_("spec.storage", {"endpoint": endpoint})))
    result = wft("validate", "-f", str(path))
    assert result.returncode == 1 and word in result.stderr
    assert "TopSecret42" not in result.stderr + result.stdout


def test_redact_hides_userinfo_anywhere() -> None:
    assert uris.redact("see http://KEY:SECRET@host:9000/x and s3://a:b@c") == (
        "see http://***@host:9000/x and s3://***@c"
    )


# --- s3:// keys -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("spec.dataset.uri", "s3://data-bucket/../other-team/"),
        ("spec.dataset.uri", "s3://data-bucket/./x/"),
        ("spec.dataset.uri", "s3://data-bucket/x/.."),
        ("spec.output.uri", "s3://out-bucket/a/../../b/"),
        ("spec.dataset.cacheUri", "s3://cache-bucket/./"),
        ("spec.dataset.manifest", "../train.jsonl"),
        ("spec.dataset.evalManifest", "s3://data-bucket/x/../eval.jsonl"),
        ("spec.dataset.generalEvalManifest", "./general.jsonl"),
        ("spec.baseModel", "s3://models-bucket/whisper/../other/"),
    ],
)
def test_dot_segments_in_s3_keys_are_refused(field: str, value: str) -> None:
    found, resource = validate_object(with_(field, value))
    assert resource is None
    assert any(p.path == field and "'..' path segments" in p.message for p in found), [
        str(p) for p in found
    ]


def test_dots_inside_names_and_local_folders_are_fine() -> None:
    for field, value in [
        ("spec.dataset.uri", "s3://data.bucket/v1.2/..hidden/a..b/"),
        ("spec.dataset.manifest", "train..v2.jsonl"),
        ("spec.baseModel", "../models/whisper-small"),  # a folder for `wft train`
    ]:
        found, resource = validate_object(with_(field, value))
        assert found == [] and resource is not None, (field, [str(p) for p in found])


# --- service accounts, priority classes, tolerations, GPUs ------------------------------------


def test_the_default_service_account_is_refused_by_default() -> None:
    (found,) = problems(serviceAccountName="default")
    assert found.startswith("spec.serviceAccountName: 'default': ")
    assert "every pod in the namespace" in found and "WFT_ALLOWED_SERVICE_ACCOUNTS" in found
    assert problems(serviceAccountName="speech-trainer") == []
    listed = Settings(allowed_service_accounts=["speech-trainer"])
    assert problems(listed, serviceAccountName="speech-trainer") == []
    (other,) = problems(listed, serviceAccountName="admin-bot")
    assert "not listed in WFT_ALLOWED_SERVICE_ACCOUNTS (speech-trainer)" in other
    assert problems(Settings(allowed_service_accounts=["*"]), serviceAccountName="default") == []
    assert (
        problems(Settings(allowed_service_accounts=["default"]), serviceAccountName="default") == []
    )


@pytest.mark.parametrize("name", ["system-node-critical", "system-cluster-critical"])
def test_system_priority_classes_are_refused_by_default(name: str) -> None:
    (found,) = problems(resources={"priorityClassName": name})
    assert found.startswith(f"spec.resources.priorityClassName: '{name}': ")
    assert "WFT_ALLOWED_PRIORITY_CLASSES" in found
    assert problems(resources={"priorityClassName": "training-low"}) == []
    only = Settings(allowed_priority_classes=["training-low"])
    assert problems(only, resources={"priorityClassName": "training-high"}) != []
    assert (
        problems(Settings(allowed_priority_classes=["*"]), resources={"priorityClassName": name})
        == []
    )


def test_a_toleration_of_every_taint_is_refused_by_default() -> None:
    every = [{"key": "nvidia.com/gpu", "operator": "Exists"}, {"operator": "Exists"}]
    (found,) = problems(resources={"tolerations": every})
    assert found.startswith("spec.resources.tolerations[1]: ")
    assert "WFT_ALLOW_TOLERATE_ALL_TAINTS" in found
    noexecute = [{"operator": "Exists", "effect": "NoExecute"}]
    assert problems(resources={"tolerations": noexecute}) != []  # every NoExecute taint
    assert (
        problems(Settings(allow_tolerate_all_taints=True), resources={"tolerations": every}) == []
    )


def test_at_most_eight_gpus_by_default() -> None:
    assert problems(resources={"gpus": 8}) == []
    (found,) = problems(resources={"gpus": 9})
    assert "WFT_MAX_GPUS=8" in found
    assert problems(Settings(max_gpus=None), resources={"gpus": 64}) == []


# --- settings from the environment ----------------------------------------------------------


def test_settings_from_env() -> None:
    s = Settings.from_env(
        {
            "WFT_ALLOWED_IMAGE_PREFIXES": "reg.example/a/, reg.example/b/",
            "WFT_ALLOWED_STORAGE_ENDPOINTS": "http://minio:9000,https://s3.example",
            "WFT_ALLOW_LINK_LOCAL_ENDPOINTS": "true",
            "WFT_ALLOWED_SERVICE_ACCOUNTS": "*",
            "WFT_ALLOWED_PRIORITY_CLASSES": "",
            "WFT_ALLOW_TOLERATE_ALL_TAINTS": "false",
            "WFT_MAX_GPUS": "4",
        }
    )
    assert s.allowed_image_prefixes == ["reg.example/a/", "reg.example/b/"]
    assert s.allowed_storage_endpoints == ["http://minio:9000", "https://s3.example"]
    assert s.allow_link_local_endpoints and not s.allow_tolerate_all_taints
    assert (s.allowed_service_accounts, s.allowed_priority_classes, s.max_gpus) == (["*"], [], 4)
    defaults = Settings.from_env({})
    assert defaults.max_gpus == 8 and not defaults.allow_link_local_endpoints


def test_a_bad_endpoint_setting_names_the_variable_not_the_secret() -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"WFT_ALLOWED_STORAGE_ENDPOINTS": "http://KEY:TopSecret42@minio:9000"})
    assert str(err.value).startswith("WFT_ALLOWED_STORAGE_ENDPOINTS=")
    assert "TopSecret42" not in str(err.value) and "credentials" in str(err.value)


# --- as a user meets them: wft validate and wft render ----------------------------------------


def wft(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WFT_")}
    result = subprocess.run(
        [sys.executable, "-m", "wft_cli", *args],
        capture_output=True,
        text=True,
        env={**clean, **env},
        timeout=60,
        check=False,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


HOSTILE: dict[str, Any] = {
    "serviceAccountName": "default",
    "image": "docker.io/someone/miner:latest",
    "storage": {"endpoint": "http://169.254.169.254/"},
    "resources": {
        "gpus": 9,
        "priorityClassName": "system-node-critical",
        "tolerations": [{"operator": "Exists"}],
    },
}


@pytest.mark.parametrize("command", ["validate", "render"])
def test_wft_validate_and_render_apply_the_guard_rails(tmp_path: Path, command: str) -> None:
    doc = copy.deepcopy(BASE)
    doc["spec"].update(HOSTILE)
    path = tmp_path / "hostile.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = wft(command, "-f", str(path))
    assert result.returncode == 1
    for rule in ["WFT_MAX_GPUS", "WFT_ALLOWED_IMAGE_PREFIXES", "WFT_ALLOW_LINK_LOCAL_ENDPOINTS",
                 "WFT_ALLOWED_SERVICE_ACCOUNTS", "WFT_ALLOWED_PRIORITY_CLASSES",
                 "WFT_ALLOW_TOLERATE_ALL_TAINTS"]:  # fmt: skip
        assert rule in result.stderr, (rule, result.stderr)
    relaxed = {
        "WFT_MAX_GPUS": "16",
        "WFT_ALLOWED_IMAGE_PREFIXES": "docker.io/someone/",
        "WFT_ALLOW_LINK_LOCAL_ENDPOINTS": "true",
        "WFT_ALLOWED_SERVICE_ACCOUNTS": "*",
        "WFT_ALLOWED_PRIORITY_CLASSES": "*",
        "WFT_ALLOW_TOLERATE_ALL_TAINTS": "true",
    }
    result = wft(command, "-f", str(path), **relaxed)
    assert result.returncode == 0, result.stderr
