"""`wft render` and the pure rendering behind it: what the operator will create, as data."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from wft_api.v1alpha1 import ResourceRef, TrainerConfig, WhisperFineTune
from wft_cli.main import main
from wft_operator.permissions import TRAINER_RULE_VERBS
from wft_operator.render import guard_rail_problems, render_all, render_job, spec_hash
from wft_operator.settings import Settings, SettingsError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _render_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[Any], str]:
    code = main(["render", *args])
    out, err = capsys.readouterr()
    docs = [d for d in yaml.safe_load_all(out) if d is not None] if code == 0 else []
    return code, docs, err


def _resource(spec_overrides: dict[str, Any] | None = None, name: str = "demo") -> WhisperFineTune:
    spec = {"dataset": {"uri": "s3://data/x/"}, "output": {"uri": "s3://models/y/"}}
    spec.update(spec_overrides or {})
    return WhisperFineTune.model_validate({"metadata": {"name": name}, "spec": spec})


def _children(resource: WhisperFineTune, settings: Settings | None = None, generation: int = 1):
    ref = ResourceRef(
        namespace="team-a", name=resource.metadata.name, uid="u-1", generation=generation
    )
    return {o["kind"]: o for o in render_all(ref, resource.spec, settings or Settings())}


def _env(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}


def _config(docs: dict[str, dict[str, Any]] | list[dict[str, Any]]) -> str:
    """The trainer's config as rendered: the ConfigMap's file that the Job's pod mounts."""
    kids = docs if isinstance(docs, dict) else {d["kind"]: d for d in docs}
    job, config_map = kids["Job"], kids["ConfigMap"]
    pod = job["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if "configMap" in v)
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == volume["name"])
    path = _env(job)["WFT_CONFIG_FILE"]["value"]
    assert mount["readOnly"] is True and path.startswith(mount["mountPath"] + "/")
    return str(config_map["data"][path.removeprefix(mount["mountPath"] + "/")])


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_rendered_examples_pass_kubernetes_validate_strict(capsys, example):
    code, docs, err = _render_cli(capsys, "-f", str(example))
    assert code == 0, err
    assert [d["kind"] for d in docs] == [
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "Job",
    ]
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, "1.30", strict=True)
        except kubernetes_validate.ValidationError as error:  # pragma: no cover - on failure
            pytest.fail(f"{doc['kind']}: {str(error).splitlines()[0]}")


def test_kubernetes_validate_catches_a_bad_job():
    """The check above can fail: an unknown pod field is refused in strict mode."""
    job = _children(_resource())["Job"]
    job["spec"]["template"]["spec"]["gpuCount"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, "1.30", strict=True)


def test_render_namespace_generation_uid_and_image_options(capsys, tmp_path):
    path = tmp_path / "r.yaml"
    data = yaml.safe_load((ROOT / "examples/minimal.yaml").read_text())
    data["metadata"].update(generation=4, uid="1234-abcd")
    path.write_text(yaml.safe_dump(data))
    code, docs, err = _render_cli(capsys, "-f", str(path), "-n", "ml", "--image", "reg/t:9")
    assert code == 0, err
    job = docs[-1]
    assert job["metadata"]["name"] == "call-center-en-g4"
    assert {d["metadata"]["namespace"] for d in docs} == {"ml"}
    assert job["metadata"]["ownerReferences"][0]["uid"] == "1234-abcd"
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "reg/t:9"
    config = TrainerConfig.model_validate_json(_config(docs))
    assert (config.resource.namespace, config.resource.generation) == ("ml", 4)


def test_render_defaults_to_namespace_default_and_generation_1(capsys):
    code, docs, _ = _render_cli(capsys, "-f", str(ROOT / "examples/minimal.yaml"))
    assert code == 0
    assert {d["metadata"]["namespace"] for d in docs} == {"default"}
    assert docs[-1]["metadata"]["labels"]["wft.dev/generation"] == "1"


def test_render_refuses_an_invalid_resource_like_validate(capsys, tmp_path):
    path = tmp_path / "bad.yaml"
    data = yaml.safe_load((ROOT / "examples/minimal.yaml").read_text())
    data["spec"]["lora"] = {"rank": 0}
    path.write_text(yaml.safe_dump(data))
    code, docs, err = _render_cli(capsys, "-f", str(path))
    assert code == 1 and docs == []
    assert "spec.lora.rank" in err
    assert "Traceback" not in err


def test_render_refuses_more_gpus_than_the_operator_allows(capsys, monkeypatch):
    monkeypatch.setenv("WFT_MAX_GPUS", "0")
    code, _, err = _render_cli(capsys, "-f", str(ROOT / "examples/minimal.yaml"))
    assert code == 1
    assert "spec.resources.gpus" in err and "WFT_MAX_GPUS=0" in err


def test_render_missing_file_is_a_message_not_a_traceback(capsys, tmp_path):
    code, _, err = _render_cli(capsys, "-f", str(tmp_path / "nope.yaml"))
    assert code == 1 and "no such file" in err


def test_trainer_role_allows_only_its_own_status():
    kids = _children(_resource())
    assert kids["Role"]["rules"] == [
        {
            "apiGroups": ["wft.dev"],
            "resources": ["whisperfinetunes/status"],
            "resourceNames": ["demo"],
            "verbs": TRAINER_RULE_VERBS,
        }
    ]
    binding = kids["RoleBinding"]
    assert binding["roleRef"]["name"] == kids["Role"]["metadata"]["name"]
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": kids["ServiceAccount"]["metadata"]["name"],
            "namespace": "team-a",
        }
    ]
    pod = kids["Job"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == kids["ServiceAccount"]["metadata"]["name"]


def test_named_service_account_is_bound_and_none_is_created():
    kids = _children(_resource({"serviceAccountName": "irsa-speech"}))
    assert "ServiceAccount" not in kids
    assert kids["RoleBinding"]["subjects"][0]["name"] == "irsa-speech"
    assert kids["Job"]["spec"]["template"]["spec"]["serviceAccountName"] == "irsa-speech"


def test_every_child_is_owned_by_the_resource_and_labelled():
    for kind, obj in _children(_resource(), generation=3).items():
        meta = obj["metadata"]
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "wft.dev/v1alpha1",
                "kind": "WhisperFineTune",
                "name": "demo",
                "uid": "u-1",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ], kind
        assert meta["labels"]["wft.dev/name"] == "demo"
        assert meta["labels"]["wft.dev/uid"] == "u-1"
        assert meta["labels"]["app.kubernetes.io/instance"] == "demo"
        assert meta["namespace"] == "team-a"


def test_job_resources_placement_and_lifecycle_from_the_spec():
    resource = _resource(
        {
            "resources": {
                "gpus": 2,
                "cpu": "12",
                "memory": "96Gi",
                "nodeSelector": {"gpu": "h100"},
                "tolerations": [
                    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
                ],
                "priorityClassName": "train-low",
            },
            "queueName": "team-queue",
            "suspend": True,
            "backoffLimit": 5,
            "activeDeadlineSeconds": 7200,
            "ttlSecondsAfterFinished": 600,
        }
    )
    job = _children(resource, generation=7)["Job"]
    assert job["metadata"]["name"] == "demo-g7"
    assert job["metadata"]["labels"]["wft.dev/generation"] == "7"
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-queue"
    spec = job["spec"]
    assert (spec["suspend"], spec["backoffLimit"]) == (True, 5)
    assert (spec["activeDeadlineSeconds"], spec["ttlSecondsAfterFinished"]) == (7200, 600)
    pod = spec["template"]["spec"]
    assert spec["template"]["metadata"]["labels"]["wft.dev/name"] == "demo"
    assert pod["restartPolicy"] == "Never"
    assert pod["terminationGracePeriodSeconds"] >= 300
    assert pod["nodeSelector"] == {"gpu": "h100"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert pod["priorityClassName"] == "train-low"
    container = pod["containers"][0]
    want = {"cpu": "12", "memory": "96Gi", "nvidia.com/gpu": "2"}
    assert container["resources"] == {"requests": want, "limits": want}
    # Two GPUs: torchrun's two ranks on this node (wft_trainer.launch keeps exit code 3).
    assert container["command"] == [
        "python",
        "-m",
        "wft_trainer.launch",
        "--standalone",
        "--nnodes=1",
        "--nproc-per-node=2",
        "--module",
        "wft_trainer",
    ]
    env = _env(job)
    assert env["NCCL_NVLS_ENABLE"]["value"] == "0"  # NVLink multicast stays off
    assert env["TORCH_SYMM_MEM_DISABLE_MULTICAST"]["value"] == "1"
    assert env["NVSHMEM_DISABLE_NVLS"]["value"] == "1"
    # torchrun lets the ranks checkpoint within the pod's grace period before it kills them.
    assert (
        0
        < int(env["TORCH_ELASTIC_SHUTDOWN_TIMEOUT"]["value"])
        < pod["terminationGracePeriodSeconds"]
    )
    # One node: a plain Job of one pod, no Service.
    assert "completionMode" not in spec and "parallelism" not in spec
    assert "Service" not in _children(resource)


@pytest.mark.parametrize("gpus", [0, 1])
def test_one_gpu_or_none_runs_one_trainer_process(gpus: int) -> None:
    job = _children(_resource({"resources": {"gpus": gpus}}))["Job"]
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "python",
        "-m",
        "wft_trainer",
    ]
    assert not {"NCCL_NVLS_ENABLE", "TORCH_ELASTIC_SHUTDOWN_TIMEOUT"} & set(_env(job))


def test_permanent_trainer_failures_fail_the_job_without_retries():
    job = _children(_resource())["Job"]
    rules = job["spec"]["podFailurePolicy"]["rules"]
    container = job["spec"]["template"]["spec"]["containers"][0]["name"]
    assert rules[0] == {
        "action": "FailJob",
        "onExitCodes": {"containerName": container, "operator": "In", "values": [3]},
    }
    # Preemption does not use up backoffLimit: the retry resumes from a checkpoint.
    assert rules[1] == {
        "action": "Ignore",
        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
    }


def test_job_falls_back_to_the_platform_defaults():
    settings = Settings.from_env(
        {
            "WFT_DEFAULT_CPU": "4",
            "WFT_DEFAULT_MEMORY": "32Gi",
            "WFT_DEFAULT_NODE_SELECTOR": '{"pool": "gpu"}',
            "WFT_DEFAULT_TOLERATIONS": '[{"key": "gpu", "operator": "Exists"}]',
            "WFT_DEFAULT_PRIORITY_CLASS": "batch",
            "WFT_DEFAULT_ACTIVE_DEADLINE_SECONDS": "3600",
            "WFT_TRAINER_IMAGE": "registry.local/trainer:1",
            "WFT_TRAINER_IMAGE_PULL_POLICY": "Always",
        }
    )
    job = _children(_resource({"resources": {"gpus": 0}}), settings)["Job"]
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"] == {"cpu": "4", "memory": "32Gi"}  # no GPU at 0
    assert (container["image"], container["imagePullPolicy"]) == (
        "registry.local/trainer:1",
        "Always",
    )
    assert pod["nodeSelector"] == {"pool": "gpu"}
    assert pod["tolerations"] == [{"key": "gpu", "operator": "Exists"}]
    assert pod["priorityClassName"] == "batch"
    assert job["spec"]["activeDeadlineSeconds"] == 3600
    assert "ttlSecondsAfterFinished" not in job["spec"]
    assert "kueue.x-k8s.io/queue-name" not in job["metadata"]["labels"]


def test_platform_environment_reaches_every_trainer_pod():
    settings = Settings.from_env(
        {"WFT_TRAINER_ENV": '{"HTTPS_PROXY": "http://proxy:3128", "WFT_COMPILE_ENCODER": "0"}'}
    )
    kids = _children(_resource(), settings)
    env = _env(kids["Job"])
    assert env["HTTPS_PROXY"] == {"name": "HTTPS_PROXY", "value": "http://proxy:3128"}
    assert env["WFT_COMPILE_ENCODER"]["value"] == "0"
    assert json.loads(_config(kids))["resource"]["name"] == "demo"  # still ours


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ('{"WFT_CONFIG": "{}"}', "WFT_CONFIG is set by the operator itself"),
        ('{"WFT_CONFIG_FILE": "/x"}', "WFT_CONFIG_FILE is set by the operator itself"),
        ('{"AWS_SECRET_ACCESS_KEY": "x"}', "AWS_SECRET_ACCESS_KEY is set by the operator"),
        # Every pod of several nodes would get the same node rank.
        ('{"JOB_COMPLETION_INDEX": "0"}', "JOB_COMPLETION_INDEX is set by the operator"),
        ('{"1BAD": "x"}', "'1BAD' is not an environment variable name"),
        ('{"OK": 1}', "WFT_TRAINER_ENV"),
        ("[1]", "WFT_TRAINER_ENV"),
    ],
)
def test_platform_environment_cannot_replace_the_operators_own(value, named):
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"WFT_TRAINER_ENV": value})
    assert named in str(err.value) and str(err.value).startswith("WFT_TRAINER_ENV=")


def test_spec_image_overrides_the_operator_image():
    job = _children(_resource({"image": "mine/trainer:dev"}))["Job"]
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "mine/trainer:dev"


def test_pod_is_restricted_and_has_writable_cache_and_shm():
    pod = _children(_resource())["Job"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 1000
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = pod["containers"][0]["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["readOnlyRootFilesystem"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
    assert volumes[mounts["/cache"]] == {"name": mounts["/cache"], "emptyDir": {}}
    assert volumes[mounts["/dev/shm"]]["emptyDir"] == {"medium": "Memory"}
    env = _env({"spec": {"template": {"spec": pod}}})
    assert env["WFT_CACHE_DIR"]["value"] == "/cache"
    assert env["HF_HOME"]["value"] == "/cache/hf"


def test_trainer_config_carries_the_resource_and_spec():
    resource = _resource({"language": "de", "lora": {"rank": 8}})
    kids = _children(resource, generation=2)
    config = TrainerConfig.model_validate_json(_config(kids))
    assert config.resource == ResourceRef(namespace="team-a", name="demo", uid="u-1", generation=2)
    assert config.spec == resource.spec
    assert kids["ConfigMap"]["immutable"] is True  # a run's config never changes
    assert kids["ConfigMap"]["metadata"]["name"] == kids["Job"]["metadata"]["name"] == "demo-g2"


def test_a_large_spec_is_a_file_never_an_environment_variable():
    """Linux refuses an exec with one variable over 128 KiB (MAX_ARG_STRLEN): a spec that large
    once left the resource Pending (the API now bounds a spec well below that). The config is a
    mounted file; every variable stays small, whatever the spec's size."""
    kids = _children(_resource({"resources": largest_resources()}))
    assert len(_config(kids)) > 40 * 1024
    values = [e.get("value", "") for e in _env(kids["Job"]).values()]
    assert max(len(v) for v in values) < 1024


def largest_resources() -> dict[str, object]:
    """The largest `spec.resources` the API admits: 64 node labels and 64 tolerations with
    keys and values at their longest (about 50 KB of spec)."""
    keys = [f"l{i:02d}" + ".example" * 30 + "/" + "n" * 63 for i in range(64)]
    return {
        "nodeSelector": {k: "x" * 63 for k in keys},
        "tolerations": [
            {"key": k, "operator": "Equal", "value": "y" * 63, "effect": "NoSchedule"} for k in keys
        ],
    }


def test_credentials_only_as_secret_refs():
    resource = _resource(
        {
            "storage": {"credentialsSecret": "s3-creds"},
            "hfTokenSecret": "hf",
            "baseModel": "s3://models/whisper/",
        }
    )
    job = _children(resource)["Job"]
    env = _env(job)
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        assert env[var]["valueFrom"]["secretKeyRef"]["name"] == "s3-creds"
        assert env[var]["valueFrom"]["secretKeyRef"]["key"] == var
        assert "value" not in env[var]
    assert env["AWS_SESSION_TOKEN"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert "optional" not in env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf", "key": "HF_TOKEN"}
    assert env["HF_HUB_OFFLINE"]["value"] == "1"  # s3:// base model: never ask the hub


def test_no_credentials_no_secret_env_and_hub_allowed():
    env = _env(_children(_resource())["Job"])
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "HF_TOKEN", "HF_HUB_OFFLINE"} & set(
        env
    )


def test_long_names_stay_valid_and_deterministic():
    name = "a" * 30 + "-" + "b" * 32  # 63 characters, the longest valid name
    assert len(name) == 63
    first = _children(_resource(name=name), generation=12345)
    second = _children(_resource(name=name), generation=12345)
    assert first == second
    for obj in first.values():
        assert len(obj["metadata"]["name"]) <= 63
        assert DNS_LABEL.match(obj["metadata"]["name"]), obj["metadata"]["name"]
        for value in obj["metadata"]["labels"].values():
            assert len(value) <= 63
        kubernetes_validate.validate(obj, "1.30", strict=True)
    other = _children(_resource(name=name), generation=12346)["Job"]["metadata"]["name"]
    assert other != first["Job"]["metadata"]["name"]
    sibling = _children(_resource(name=name[:-1] + "c"), generation=12345)
    assert sibling["Job"]["metadata"]["name"] != first["Job"]["metadata"]["name"]


@pytest.mark.parametrize(
    "neutral",
    [{"suspend": True}, {"activeDeadlineSeconds": 7200}, {"backoffLimit": 5},
     {"ttlSecondsAfterFinished": 60}, {"queueName": "other-queue"},
     {"backoffLimit": 2}],  # spelling out a default is the same spec
)  # fmt: skip
def test_spec_hash_leaves_out_the_run_neutral_fields(neutral):
    base = _resource()
    assert spec_hash(base.spec) == spec_hash(_resource(neutral).spec)
    job = render_job(ResourceRef(name="demo"), base.spec, Settings())
    assert job["metadata"]["labels"]["wft.dev/spec-hash"] == spec_hash(base.spec)


@pytest.mark.parametrize(
    "shaping",
    [{"retrainNonce": "v2"}, {"training": {"learningRate": 3e-4}}, {"lora": {"rank": 8}},
     {"image": "trainer:2"}, {"dataset": {"uri": "s3://other/"}}],
)  # fmt: skip
def test_spec_hash_changes_with_what_shapes_training(shaping):
    body = _resource().spec.to_dict()
    for key, value in shaping.items():
        body[key] = {**body[key], **value} if isinstance(value, dict) else value
    other = _resource(body).spec
    assert spec_hash(_resource().spec) != spec_hash(other)


def test_the_job_name_carries_the_generation():
    job = render_job(ResourceRef(name="demo", generation=7), _resource().spec, Settings())
    assert job["metadata"]["name"] == "demo-g7"
    assert job["metadata"]["labels"]["wft.dev/generation"] == "7"


def test_gpu_guard_rail_names_field_and_limit():
    settings = Settings(max_gpus=2)
    assert guard_rail_problems(_resource({"resources": {"gpus": 2}}).spec, settings) == []
    (problem,) = guard_rail_problems(_resource({"resources": {"gpus": 4}}).spec, settings)
    assert problem.startswith("spec.resources.gpus: 4") and "2" in problem


def test_settings_from_env_and_errors_name_the_variable():
    s = Settings.from_env(
        {"WFT_NAMESPACES": "a, b,,c", "WFT_MAX_GPUS": "8", "WFT_METRICS_PORT": "0"}
    )
    assert (s.namespaces, s.max_gpus, s.metrics_port) == (["a", "b", "c"], 8, 0)
    assert Settings.from_env({}).namespaces == []  # all namespaces
    assert (Settings().default_cpu, Settings().default_memory) == ("8", "64Gi")
    assert (Settings().health_port, Settings().metrics_port) == (8080, 9090)
    with pytest.raises(SettingsError, match="WFT_DEFAULT_NODE_SELECTOR"):
        Settings.from_env({"WFT_DEFAULT_NODE_SELECTOR": "{gpu"})
    with pytest.raises(SettingsError, match="WFT_MAX_GPUS"):
        Settings.from_env({"WFT_MAX_GPUS": "many"})
    with pytest.raises(SettingsError, match="WFT_DEFAULT_MEMORY"):
        Settings.from_env({"WFT_DEFAULT_MEMORY": "lots"})


def test_rendered_config_json_is_compact_single_line():
    config = _config(_children(_resource()))
    assert "\n" not in config
    assert json.loads(config)["resource"]["name"] == "demo"


def test_render_as_json_is_a_list_kubectl_reads(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["render", "-f", str(ROOT / "examples/minimal.yaml"), "-o", "json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["kind"] == "List" and out["apiVersion"] == "v1"
    assert {o["kind"] for o in out["items"]} == {
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "Job",
    }


def test_several_nodes_render_an_indexed_job_with_a_headless_service(capsys, tmp_path):
    """nodes: 2 (issue 20): one pod per node as an Indexed Job whose pods find pod 0 through a
    headless Service; torchrun's node rank is the completion index, as `wft render` shows."""
    resource = _resource({"resources": {"gpus": 4, "nodes": 2}, "backoffLimit": 3})
    kids = _children(resource)
    job, service = kids["Job"], kids["Service"]
    name = job["metadata"]["name"]
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 2, 2)
    # A failure of the run fails every pod (the peers at their next collective): 3 runs' worth.
    assert spec["backoffLimit"] == 6
    assert pod["subdomain"] == service["metadata"]["name"] == name
    assert pod["containers"][0]["command"] == [
        "python",
        "-m",
        "wft_trainer.launch",
        "--nnodes=2",
        "--nproc-per-node=4",
        "--node-rank=$(JOB_COMPLETION_INDEX)",
        f"--master-addr={name}-0.{name}",
        "--master-port=29500",
        "--rdzv-conf=timeout=1800",
        "--module",
        "wft_trainer",
    ]
    assert _env(job)["NCCL_NVLS_ENABLE"]["value"] == "0"
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    # The Service selects exactly the Job's pods, and is the resource's child like the Job.
    pod_labels = spec["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert set(service["spec"]["selector"]) == {"wft.dev/name", "wft.dev/generation"}
    assert service["metadata"]["ownerReferences"] == job["metadata"]["ownerReferences"]
    # Exit 3 still fails the Job at once; 143 (a peer of a preempted pod stopped at the
    # checkpoint) and disruptions are not counted.
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0]["action"] == "FailJob" and rules[0]["onExitCodes"]["values"] == [3]
    ignored = [r["onExitCodes"]["values"] for r in rules if "onExitCodes" in r]
    assert [143] in ignored and rules[1]["action"] == "Ignore"
    for doc in (job, service):
        kubernetes_validate.validate(doc, "1.30", strict=True)
    # `wft render` prints the Service before the Job (created in that order).
    path = tmp_path / "r.yaml"
    data = yaml.safe_load((ROOT / "examples/minimal.yaml").read_text())
    data["spec"]["resources"] = {"gpus": 2, "nodes": 3}
    path.write_text(yaml.safe_dump(data))
    code, docs, err = _render_cli(capsys, "-f", str(path))
    assert code == 0, err
    assert [d["kind"] for d in docs][-2:] == ["Service", "Job"]
    assert docs[-1]["spec"]["completions"] == 3


def test_a_service_name_starts_with_a_letter_and_fits():
    """A resource's name may start with a digit and fill 63 characters; a Service's (DNS-1035)
    may not start with one, and pod 0's host name must resolve through it."""
    for name in ("7-digits", "x" * 63, "9" + "a" * 62, "1-" + "b" * 56):
        kids = _children(_resource({"resources": {"nodes": 2}}, name=name))
        service, pod = kids["Service"], kids["Job"]["spec"]["template"]["spec"]
        assert re.match(r"^[a-z]([-a-z0-9]*[a-z0-9])?$", service["metadata"]["name"])
        assert len(service["metadata"]["name"]) <= 63
        assert pod["subdomain"] == service["metadata"]["name"]
        # The last pod's host name, `<job>-15` at most, is a DNS label too.
        assert len(f"{kids['Job']['metadata']['name']}-15") <= 63
        kubernetes_validate.validate(service, "1.30", strict=True)


def test_one_node_has_no_service_and_no_extra_failure_rule():
    job = _children(_resource({"resources": {"gpus": 2}}))["Job"]
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert [r["action"] for r in rules] == ["FailJob", "Ignore"]
    assert "subdomain" not in job["spec"]["template"]["spec"]


def test_the_operator_may_create_and_delete_the_rendezvous_services():
    from wft_operator.permissions import OPERATOR_RULES

    rule = next(r for r in OPERATOR_RULES if "services" in r["resources"])
    assert rule["apiGroups"] == [""] and {"get", "create", "delete"} <= set(rule["verbs"])


def test_the_gpu_cap_counts_every_node():
    problems = guard_rail_problems(
        _resource({"resources": {"gpus": 2, "nodes": 2}}).spec, Settings(max_gpus=2)
    )
    assert problems and "2 on each of 2 nodes, 4 in all" in problems[0]
    assert "WFT_MAX_GPUS=2" in problems[0]
    assert not guard_rail_problems(
        _resource({"resources": {"gpus": 1, "nodes": 2}}).spec, Settings(max_gpus=2)
    )
