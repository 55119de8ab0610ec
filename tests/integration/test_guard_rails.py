"""The platform's guard-rails, enforced by the real operator against the embedded Kubernetes API
(issue 17): with the default settings each resource below is admitted by the API server (the
CRD cannot know the platform's rules) and refused by the operator: phase Failed, Accepted
False with InvalidSpec, a status message naming the field and the rule (the WFT_* setting),
a Warning Event, and no Job. With the rules relaxed, the same resources run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from wft_local.kube_api import EmbeddedKubernetes
from wft_operator.settings import Settings

from tests.cluster import operator_scenarios as s

pytestmark = pytest.mark.integration

DEFAULTS = Settings(metrics_port=0, health_port=0, trainer_image="registry.example/wft/trainer:1")
RELAXED = DEFAULTS.model_copy(
    update={
        "allowed_image_prefixes": ["docker.io/someone", "registry.example/speech-team"],
        "allow_link_local_endpoints": True,
        "allowed_service_accounts": ["*"],
        "allowed_priority_classes": ["*"],
        "allow_tolerate_all_taints": True,
        "max_gpus": 16,
    }
)

# (name, spec fields, the field the message names, the rule it names)
CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("image", {"image": "docker.io/someone/miner:latest"}, "spec.image",
     "WFT_ALLOWED_IMAGE_PREFIXES"),
    ("image-lookalike", {"image": "registry.example/speech-team-evil/x:1"}, "spec.image",
     "WFT_ALLOWED_IMAGE_PREFIXES"),
    ("metadata-endpoint", {"storage": {"endpoint": "http://169.254.169.254/latest/"}},
     "spec.storage.endpoint", "WFT_ALLOW_LINK_LOCAL_ENDPOINTS"),
    ("metadata-decimal", {"storage": {"endpoint": "http://2852039166/"}},
     "spec.storage.endpoint", "WFT_ALLOW_LINK_LOCAL_ENDPOINTS"),
    ("metadata-v6", {"storage": {"endpoint": "http://[fd00:ec2::254]/"}},
     "spec.storage.endpoint", "WFT_ALLOW_LINK_LOCAL_ENDPOINTS"),
    ("metadata-gce", {"storage": {"endpoint": "http://metadata.google.internal/"}},
     "spec.storage.endpoint", "WFT_ALLOW_LINK_LOCAL_ENDPOINTS"),
    ("default-account", {"serviceAccountName": "default"}, "spec.serviceAccountName",
     "WFT_ALLOWED_SERVICE_ACCOUNTS"),
    ("node-critical", {"resources": {"priorityClassName": "system-node-critical"}},
     "spec.resources.priorityClassName", "WFT_ALLOWED_PRIORITY_CLASSES"),
    ("tolerate-all", {"resources": {"tolerations": [{"operator": "Exists"}]}},
     "spec.resources.tolerations[0]", "WFT_ALLOW_TOLERATE_ALL_TAINTS"),
    ("gpus", {"resources": {"gpus": 9}}, "spec.resources.gpus", "WFT_MAX_GPUS=8"),
]  # fmt: skip


@pytest.fixture
def kube(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmbeddedKubernetes]:
    with EmbeddedKubernetes() as api:
        monkeypatch.setenv("KUBECONFIG", str(api.write_kubeconfig(tmp_path / "kubeconfig")))
        yield api


@contextlib.contextmanager
def _run_operator(settings: Settings) -> Iterator[s.Operator]:
    op = s.Operator(settings)
    op.start()
    try:
        yield op
    finally:
        op.stop()


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), {})


def test_default_guard_rails_refuse_each_case_naming_the_rule(kube: EmbeddedKubernetes) -> None:
    c = s.Cluster(kube.api_client(), "default", simulated=True)
    with _run_operator(DEFAULTS):
        for name, spec, _field, _rule in CASES:
            c.apply(s.resource(name, **spec))  # the API server admits every one of them
        c.apply(s.resource("fine", resources={"gpus": 8, "priorityClassName": "batch-low"}))
        for name, _spec, field, rule in CASES:
            s.wait_for(lambda n=name: c.phase(n) == "Failed", f"{name} Failed")
            status = c.status(name)
            accepted = _condition(status, "Accepted")
            assert (accepted.get("status"), accepted.get("reason")) == ("False", "InvalidSpec")
            assert f"{field}: " in status["message"] and rule in status["message"], status
            assert c.jobs(name) == []
        assert {(t, r) for t, r, _ in c.events("default-account")} >= {("Warning", "InvalidSpec")}
        c.job("fine")  # within every rule: it runs


def test_a_platform_that_allows_them_runs_them_after_the_operator_restarts(
    kube: EmbeddedKubernetes,
) -> None:
    """Refused under the defaults; the platform relaxes the rules (a `helm upgrade` restarts
    the operator with new settings): the operator checks every resource again at start-up and
    runs the ones now allowed, with no edit by their owners."""
    c = s.Cluster(kube.api_client(), "default", simulated=True)
    allowed = [case for case in CASES if case[0] != "image-lookalike"]
    with _run_operator(DEFAULTS):
        for name, spec, _field, _rule in allowed:
            c.apply(s.resource(name, **spec))
        c.apply(s.resource("lookalike", image="registry.example/speech-team-evil/x:1"))
        for name, _spec, _field, _rule in allowed:
            s.wait_for(lambda n=name: c.phase(n) == "Failed", f"{name} refused")
    with _run_operator(RELAXED):
        for name, _spec, _field, _rule in allowed:
            c.job(name)
            s.wait_for(lambda n=name: c.phase(n) == "Pending", f"{name} Pending")
        s.wait_for(lambda: c.phase("lookalike") == "Failed", "the look-alike image refused")
        assert "WFT_ALLOWED_IMAGE_PREFIXES" in c.status("lookalike")["message"]
        assert c.jobs("lookalike") == []


def test_a_spec_only_the_model_can_refuse_still_gets_a_status(kube: EmbeddedKubernetes) -> None:
    """A node selector key the CRD cannot check (a structural schema has no rule for map keys):
    the Job would be refused by the API server, so the operator refuses the resource instead,
    in its status, rather than retrying a create that can never succeed."""
    c = s.Cluster(kube.api_client(), "default", simulated=True)
    with _run_operator(DEFAULTS):
        c.apply(s.resource("bad-key", resources={"nodeSelector": {"not a label key!": "x"}}))
        s.wait_for(lambda: c.phase("bad-key") == "Failed", "bad-key Failed")
        message = c.status("bad-key")["message"]
        assert "spec.resources.nodeSelector" in message and "label key" in message
        assert c.jobs("bad-key") == []
