"""The real operator against the embedded Kubernetes API (no kubelet, no Job controller: the
tests write Job and Pod statuses as those would). Scenarios: tests/cluster/operator_scenarios.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from wft_api.v1alpha1 import ResourceRef, WhisperFineTune
from wft_local.kube_api import EmbeddedKubernetes
from wft_operator.render import render_all, render_job
from wft_operator.settings import Settings

from tests.cluster import operator_scenarios as s

pytestmark = pytest.mark.integration

SETTINGS = Settings(
    metrics_port=0,
    health_port=0,
    trainer_image="trainer:test",
    max_gpus=2,
    # the image-pull scenario names an image of its own
    allowed_image_prefixes=["trainer", "registry.invalid/"],
)


@pytest.fixture
def kube(tmp_path, monkeypatch) -> Iterator[EmbeddedKubernetes]:
    with EmbeddedKubernetes() as api:
        # Kopf's login and the operator's client both read KUBECONFIG.
        monkeypatch.setenv("KUBECONFIG", str(api.write_kubeconfig(tmp_path / "kubeconfig")))
        yield api


@pytest.fixture
def operator(kube) -> Iterator[s.Operator]:
    op = s.Operator(SETTINGS)
    op.start()
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture
def cluster(kube, operator) -> s.Cluster:
    return s.Cluster(kube.api_client(), "default", simulated=True)


def test_apply_creates_job_and_rbac_as_rendered(cluster):
    s.apply_creates_job_and_rbac_as_rendered(cluster, SETTINGS)


def test_several_gpus_get_one_pod_running_torchrun_as_rendered(cluster):
    """gpus: 2 on one node: the operator's Job is the render's, torchrun's two ranks in one pod
    (a plain Job, no Service); several nodes are refused by the API server, naming the field."""
    cluster.apply(s.resource("two-gpus", resources={"gpus": 2}))
    job = cluster.job("two-gpus")
    body = cluster.get("two-gpus")
    ref = ResourceRef(namespace="default", name="two-gpus", uid=body["metadata"]["uid"])
    spec = WhisperFineTune.model_validate({"metadata": {"name": "two-gpus"}, "spec": body["spec"]})
    rendered = render_job(ref, spec.spec, SETTINGS)["spec"]["template"]["spec"]["containers"][0]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == rendered["command"]
    assert "--nproc-per-node=2" in container["command"]
    assert container["env"] == rendered["env"]
    assert (job["spec"]["completionMode"], job["spec"]["parallelism"]) == ("NonIndexed", 1)
    assert not services(cluster, "two-gpus")


def services(c: s.Cluster, name: str) -> list[dict[str, Any]]:
    items = c.core.list_namespaced_service(c.ns, label_selector=f"wft.dev/name={name}").items
    return [c.api.sanitize_for_serialization(i) for i in items]


def test_several_nodes_get_an_indexed_job_and_a_headless_service_gone_with_them(cluster):
    """nodes: 2: the operator creates the render's Indexed Job and headless Service; a new run
    (spec edit) replaces both, deleting the resource deletes both; unsloth across nodes is
    refused by the API server, naming the fields."""
    cluster.apply(s.resource("two-nodes", resources={"gpus": 1, "nodes": 2}))
    job = cluster.job("two-nodes")
    body = cluster.get("two-nodes")
    ref = ResourceRef(namespace="default", name="two-nodes", uid=body["metadata"]["uid"])
    spec = WhisperFineTune.model_validate({"metadata": {"name": "two-nodes"}, "spec": body["spec"]})
    want = {o["kind"]: o for o in render_all(ref, spec.spec, SETTINGS)}
    assert (job["spec"]["completionMode"], job["spec"]["completions"]) == ("Indexed", 2)
    assert job["spec"]["parallelism"] == 2
    assert (
        job["spec"]["template"]["spec"]["subdomain"]
        == want["Job"]["spec"]["template"]["spec"]["subdomain"]
    )
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert (
        container["command"] == want["Job"]["spec"]["template"]["spec"]["containers"][0]["command"]
    )
    assert "--node-rank=$(JOB_COMPLETION_INDEX)" in container["command"]
    (service,) = s.wait_for(lambda: services(cluster, "two-nodes"), "the headless Service")
    assert service["metadata"]["name"] == job["metadata"]["name"] == "two-nodes-g1"
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == want["Service"]["spec"]["selector"]
    assert service["metadata"]["ownerReferences"] == want["Service"]["metadata"]["ownerReferences"]
    # Deleted by hand while the Job runs: made again at the Job's next event (or the resync),
    # or a pod started again could not find pod 0.
    cluster.core.delete_namespaced_service("two-nodes-g1", cluster.ns)
    s.wait_for(lambda: not services(cluster, "two-nodes"), "the Service deleted")
    poke = {"metadata": {"annotations": {"example.com/poked": "1"}}}
    cluster.batch.patch_namespaced_job("two-nodes-g1", cluster.ns, poke)
    (again,) = s.wait_for(lambda: services(cluster, "two-nodes"), "the Service made again")
    assert again["spec"]["clusterIP"] == "None"
    assert again["spec"]["selector"] == service["spec"]["selector"]

    cluster.patch_spec("two-nodes", {"lora": {"rank": 8}})
    s.wait_for(
        lambda: (
            [sv["metadata"]["name"] for sv in services(cluster, "two-nodes")] == ["two-nodes-g2"]
        ),
        "the new run's Service only",
    )
    cluster.delete("two-nodes")
    s.wait_for(lambda: not cluster.jobs("two-nodes"), "the Job garbage-collected")
    s.wait_for(lambda: not services(cluster, "two-nodes"), "the Service garbage-collected")

    with pytest.raises(ApiException) as refused:
        cluster.apply(
            s.resource("unsloth-nodes", engine="unsloth", resources={"gpus": 1, "nodes": 2})
        )
    assert refused.value.status == 422
    assert "resources.nodes above 1" in refused.value.body


def test_job_and_pod_statuses_drive_the_resource_status(cluster):
    s.job_and_pod_statuses_drive_the_resource_status(cluster)


def test_oom_failure_is_reported(cluster):
    s.oom_failure_is_reported(cluster)


def test_image_pull_failure_names_the_image(cluster):
    s.image_pull_failure_names_the_image(cluster)


def test_spec_edit_replaces_the_job(cluster):
    s.spec_edit_replaces_the_job(cluster)


def test_unchanged_reapply_does_nothing(cluster):
    s.unchanged_reapply_does_nothing(cluster)


def test_suspend_and_resume(cluster):
    s.suspend_and_resume(cluster)


def test_a_retry_is_not_a_failure(cluster):
    s.a_retry_is_not_a_failure(cluster)


def test_a_pod_that_cannot_start_says_why(cluster):
    s.a_pod_that_cannot_start_says_why(cluster)


def test_delete_removes_children(cluster):
    s.delete_removes_children(cluster)


def test_restart_makes_no_duplicate_job(cluster, operator):
    s.restart_makes_no_duplicate_job(cluster, operator)


def test_invalid_spec_is_reported(cluster):
    s.invalid_spec_is_reported(cluster, max_gpus=SETTINGS.max_gpus or 0)


@pytest.mark.parametrize("kind", ["RoleBinding", "Role", "ServiceAccount", "Job"])
def test_a_foreign_object_is_never_taken_over(cluster, kind):
    s.foreign_object_is_never_taken_over(cluster, kind)


def test_a_foreign_role_binding_outlives_the_resource(cluster):
    s.foreign_role_binding_outlives_the_resource(cluster)


def test_a_recreated_resource_is_a_new_run(cluster):
    s.recreated_resource_is_a_new_run(cluster)


def test_run_neutral_fields_change_the_job_in_place(cluster):
    s.run_neutral_fields_change_the_job_in_place(cluster)


def test_a_finished_run_is_not_started_again_when_its_job_is_gone(cluster, operator):
    s.finished_run_is_not_started_again_when_its_job_is_gone(cluster, operator)


def test_raising_a_limit_of_a_failed_run_runs_it_again(cluster):
    s.raising_a_limit_of_a_failed_run_runs_it_again(cluster)


def test_50_resources_applied_at_once_are_all_reconciled(cluster):
    s.many_resources_are_all_reconciled(cluster, 50)


def test_resync_repairs_a_status_that_no_event_updated(kube, operator):
    """A Job finished while its status write was lost (Kopf does not retry event handlers):
    the periodic resync brings the resource to Succeeded without any further event."""
    from wft_operator.kube import Kube
    from wft_operator.metrics import PhaseCounts
    from wft_operator.reconcile import Context, resync

    c = s.Cluster(kube.api_client(), "default", simulated=True)
    c.apply(s.resource("lost-write"))
    job = s.wait_for(lambda: c.jobs("lost-write") and c.job("lost-write"), "the Job")
    operator.stop()  # from here on, no handler sees the Job's events
    c.set_job_status(
        job["metadata"]["name"],
        {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]},
    )
    assert c.phase("lost-write") != "Succeeded"
    posted: list[object] = []
    ctx = Context(Kube(kube.api_client()), SETTINGS, lambda _, e: posted.append(e), PhaseCounts())
    assert resync(ctx) == 1
    assert c.phase("lost-write") == "Succeeded"
    assert [e.reason for e in posted] == ["Completed"]  # type: ignore[attr-defined]
    assert resync(ctx) == 0  # finished resources of the current generation are left alone
    c.patch_spec("lost-write", {"suspend": True})  # a new generation: synced, nothing to say
    assert resync(ctx) == 1 and resync(ctx) == 0
    assert [e.reason for e in posted] == ["Completed"]  # type: ignore[attr-defined]


def test_a_late_write_about_an_earlier_run_leaves_the_new_run_named(kube):
    """A Job event handler read the resource and picked its Job just before a spec edit; its
    write meets a 409, re-reads, and sees the newer generation: it writes nothing, so status
    keeps naming the new run under the new observedGeneration (it once named the old Job)."""
    from wft_operator.kube import Kube
    from wft_operator.metrics import PhaseCounts
    from wft_operator.reconcile import Context, _observe_at, ensure_run, parse, write_status

    c = s.Cluster(kube.api_client(), "default", simulated=True)
    ctx = Context(Kube(kube.api_client()), SETTINGS, lambda *_: None, PhaseCounts())
    c.apply(s.resource("race"))
    assert ensure_run(ctx, parse(c.get("race"), SETTINGS)) == "race-g1"
    stale, old_job = c.get("race"), c.job("race")  # what the handler read: the Job started
    old_job["status"] = {"active": 1, "startTime": "2026-12-01T00:00:00Z"}
    c.patch_spec("race", {"lora": {"rank": 8}})
    assert ensure_run(ctx, parse(c.get("race"), SETTINGS)) == "race-g2"
    assert write_status(ctx, stale, _observe_at(1, old_job, [])) == {}
    status = c.status("race")
    assert (status["observedGeneration"], status["jobName"]) == (2, "race-g2")


def test_events_are_deduplicated_as_the_event_recorder_does(kube):
    """The events API with the resource as `regarding`; an Event repeated within the series
    window counts in the first one's series instead of making another; what kubectl describe
    lists (core/v1, by involvedObject) is the same Event."""
    from wft_operator.events import EventRecorder
    from wft_operator.kube import Kube
    from wft_operator.status import Event

    c = s.Cluster(kube.api_client(), "default", simulated=True)
    body = c.apply(s.resource("noisy", suspend=True))
    clock = [1000.0]
    recorder = EventRecorder(Kube(kube.api_client()), instance="test", clock=lambda: clock[0])
    oom = Event("Warning", "OOMKilled", "attempt 1 failed", "Retry")
    for _ in range(3):
        recorder.record(body, oom)
        clock[0] += 10
    recorder.record(body, Event("Warning", "OOMKilled", "attempt 2 failed", "Retry"))
    series = c.event_series("noisy")
    assert series[("Warning", "OOMKilled", "attempt 1 failed")] == 3
    assert series[("Warning", "OOMKilled", "attempt 2 failed")] == 1
    core = [e for e in c.core.list_namespaced_event("default").items if e.reason == "OOMKilled"]
    assert sorted((e.message, e.series.count if e.series else 1) for e in core) == [
        ("attempt 1 failed", 3),
        ("attempt 2 failed", 1),
    ]
    assert {e.involved_object.uid for e in core} == {body["metadata"]["uid"]}
    clock[0] += 7 * 60  # past the series window: a new Event, as client-go
    recorder.record(body, oom)
    assert sum(1 for e in c.event_series("noisy") if e[2] == "attempt 1 failed") == 1
    items = kubernetes_events(kube)
    assert len([e for e in items if e.note == "attempt 1 failed"]) == 2


def kubernetes_events(kube):
    import kubernetes

    return kubernetes.client.EventsV1Api(kube.api_client()).list_namespaced_event("default").items
