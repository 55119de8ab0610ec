"""Status logic as data: Job and Pod status fixtures in the shapes the kubelet and Job controller
write, the resource status that `kubectl get wft` shows out."""

from __future__ import annotations

import json
from typing import Any

import pytest
from wft_api.conditions import Reason
from wft_api.v1alpha1 import ResourceRef, WhisperFineTune, WhisperFineTuneStatus
from wft_operator.render import render_job
from wft_operator.settings import Settings
from wft_operator.status import observe, spec_invalid, transition_event

T0 = "2026-11-24T10:00:00Z"
T1 = "2026-11-24T11:00:00Z"
IMAGE = "ghcr.io/whisper-finetune/trainer:0.1.0"


def resource(generation: int = 1, status: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "wft.dev/v1alpha1",
        "kind": "WhisperFineTune",
        "metadata": {"name": "demo", "namespace": "ns", "uid": "u1", "generation": generation},
        "spec": {"dataset": {"uri": "s3://data/x/"}, "output": {"uri": "s3://models/y/"}},
    }
    if status is not None:
        body["status"] = status
    return body


def job(generation: int = 1, *, conditions=(), suspend=False, **status: Any) -> dict[str, Any]:
    res = WhisperFineTune.model_validate(resource(generation))
    ref = ResourceRef(namespace="ns", name="demo", uid="u1", generation=generation)
    spec = res.spec.model_copy(update={"suspend": suspend})
    body = render_job(ref, spec, Settings())
    body["status"] = {**status, "conditions": [dict(c) for c in conditions]}
    return body


def job_cond(type_: str, reason: str = "", message: str = "") -> dict[str, str]:
    return {"type": type_, "status": "True", "reason": reason, "message": message}


def pod(
    phase: str = "Pending",
    *,
    state: dict[str, Any] | None = None,
    last: dict[str, Any] | None = None,
    conditions: list[dict[str, Any]] | None = None,
    created: str = T0,
) -> dict[str, Any]:
    cs = {"name": "trainer", "image": IMAGE, "state": state or {}, "lastState": last or {}}
    return {
        "metadata": {"name": "demo-g1-abcde", "creationTimestamp": created},
        "status": {"phase": phase, "conditions": conditions or [], "containerStatuses": [cs]},
    }


def terminated(reason: str, code: int, message: str | None = None) -> dict[str, Any]:
    term: dict[str, Any] = {"reason": reason, "exitCode": code}
    if message is not None:
        term["message"] = message
    return {"terminated": term}


def cond(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == type_)


def apply(body: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Merge the status patch as the API server would (None deletes a key)."""
    status = dict(body.get("status") or {})
    for key, value in patch.items():
        if value is None:
            status.pop(key, None)
        else:
            status[key] = value
    WhisperFineTuneStatus.model_validate(status)  # what the operator writes fits the API model
    return {**body, "status": status}


def test_unscheduled_pod_is_pending_with_the_schedulers_reason():
    msg = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    p = pod(
        conditions=[
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg}
        ]
    )
    patch = observe(resource(), job(active=1), [p], T0)
    assert patch["phase"] == "Pending"
    assert "Insufficient nvidia.com/gpu" in patch["message"]
    running = cond(patch, "Running")
    assert (running["status"], running["reason"]) == ("False", Reason.UNSCHEDULABLE)
    assert patch["observedGeneration"] == 1 and patch["jobName"] == "demo-g1"


def test_untolerated_taint_is_named():
    msg = "0/2 nodes are available: 2 node(s) had untolerated taint {nvidia.com/gpu: present}."
    p = pod(
        conditions=[
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg}
        ]
    )
    assert (
        "untolerated taint {nvidia.com/gpu: present}"
        in observe(resource(), job(), [p], T0)["message"]
    )


def test_job_without_pods_is_pending():
    patch = observe(resource(), job(), [], T0)
    assert patch["phase"] == "Pending" and cond(patch, "Running")["reason"] == Reason.JOB_CREATED


def test_running_pod_before_the_trainer_reports_is_preparing():
    patch = observe(
        resource(), job(active=1, startTime=T0), [pod("Running", state={"running": {}})], T0
    )
    assert patch["phase"] == "Preparing"
    assert patch["startTime"] == T0
    assert cond(patch, "Running")["status"] == "True"


@pytest.mark.parametrize("phase", ["Preparing", "Training", "Evaluating", "Uploading"])
def test_trainer_running_phases_are_not_overwritten(phase):
    status = {
        "phase": phase,
        "message": "step 40/100",
        "observedGeneration": 1,
        "jobName": "demo-g1",
        "progress": {"step": 40, "totalSteps": 100},
    }
    body = resource(status=status)
    running_pod = pod("Running", state={"running": {}})
    patch = observe(body, job(active=1), [running_pod], T1)
    assert "phase" not in patch and "message" not in patch and "progress" not in patch
    # A pod event that lags behind (the pod still looks pending) does not reset it either.
    assert "phase" not in observe(body, job(active=1), [pod("Pending")], T1)


def test_oom_killed():
    j = job(conditions=[job_cond("Failed", "BackoffLimitExceeded")], failed=3)
    patch = observe(resource(), j, [pod("Failed", state=terminated("OOMKilled", 137))], T1)
    assert patch["phase"] == "Failed"
    failed = cond(patch, "Failed")
    assert (failed["status"], failed["reason"]) == ("True", Reason.OOM_KILLED)
    assert "out of memory" in patch["message"] and "64Gi" in patch["message"]
    assert patch["completionTime"] == T1


@pytest.mark.parametrize("reason", ["ErrImagePull", "ImagePullBackOff"])
def test_image_pull_failure_names_the_image_while_the_job_waits(reason):
    waiting = {"waiting": {"reason": reason, "message": 'pull access denied for "x"'}}
    patch = observe(resource(), job(active=1), [pod(state=waiting)], T0)
    assert patch["phase"] == "Failed"
    assert cond(patch, "Failed")["reason"] == Reason.IMAGE_PULL_FAILED
    assert IMAGE in patch["message"] and reason in patch["message"]


def test_crash_loop_with_exit_code():
    p = pod(state={"waiting": {"reason": "CrashLoopBackOff"}}, last=terminated("Error", 2))
    patch = observe(resource(), job(active=1), [p], T0)
    assert cond(patch, "Failed")["reason"] == Reason.CRASH_LOOP
    assert "exit code 2" in patch["message"]


def test_deadline_exceeded():
    j = job(conditions=[job_cond("Failed", "DeadlineExceeded")])
    j["spec"]["activeDeadlineSeconds"] = 3600
    patch = observe(resource(), j, [pod("Failed", state=terminated("Error", 143))], T1)
    assert cond(patch, "Failed")["reason"] == Reason.DEADLINE_EXCEEDED
    assert "3600" in patch["message"]


def test_backoff_limit_exceeded_with_the_last_exit_code():
    j = job(conditions=[job_cond("Failed", "BackoffLimitExceeded")], failed=3)
    pods = [
        pod("Failed", state=terminated("Error", 1, "Traceback ... ValueError: boom"), created=T0),
        pod("Failed", state=terminated("Error", 3), created=T1),
    ]
    patch = observe(resource(), j, pods, T1)
    assert cond(patch, "Failed")["reason"] == Reason.BACKOFF_LIMIT_EXCEEDED
    assert "backoffLimit 2" in patch["message"] and "exit code 3" in patch["message"]


def test_plain_exit_code_without_job_reason():
    j = job(conditions=[job_cond("Failed", "PodFailurePolicy")])
    patch = observe(resource(), j, [pod("Failed", state=terminated("Error", 42))], T1)
    assert cond(patch, "Failed")["reason"] == Reason.CONTAINER_FAILED
    assert "exit code 42" in patch["message"]
    assert "a retry cannot fix" in patch["message"]


def test_trainer_termination_message_is_the_cause():
    message = json.dumps({"reason": "S3AccessDenied", "message": "s3://data/x/: AccessDenied"})
    j = job(conditions=[job_cond("Failed", "BackoffLimitExceeded")])
    patch = observe(resource(), j, [pod("Failed", state=terminated("Error", 1, message))], T1)
    assert cond(patch, "Failed")["reason"] == "S3AccessDenied"
    assert patch["message"] == "s3://data/x/: AccessDenied"


def test_failure_the_trainer_reported_in_status_is_kept():
    status = {
        "phase": "Failed",
        "message": "62% of the samples were skipped (too_long: 310)",
        "observedGeneration": 1,
        "conditions": [
            {
                "type": "Failed",
                "status": "True",
                "reason": "BadData",
                "message": "62% skipped",
                "lastTransitionTime": T0,
            },
            {
                "type": "Running",
                "status": "True",
                "reason": "Preparing",
                "message": "",
                "lastTransitionTime": T0,
            },
        ],
    }
    j = job(conditions=[job_cond("Failed", "BackoffLimitExceeded")])
    patch = observe(
        resource(status=status), j, [pod("Failed", state=terminated("OOMKilled", 137))], T1
    )
    after = apply(resource(status=status), patch)["status"]
    assert after["phase"] == "Failed"
    assert after["message"] == status["message"]
    assert cond(after, "Failed")["reason"] == "BadData"
    assert cond(after, "Running")["status"] == "False"


def test_succeeded_keeps_the_trainers_metrics_and_adapter():
    status = {
        "phase": "Uploading",
        "observedGeneration": 1,
        "adapterUri": "s3://models/y/ns/demo/generation-1/adapter/",
        "metrics": {"wer": 0.12, "baselineWer": 0.2},
    }
    j = job(conditions=[job_cond("Complete")], succeeded=1, completionTime=T1)
    patch = observe(
        resource(status=status), j, [pod("Succeeded", state=terminated("Completed", 0))], T1
    )
    after = apply(resource(status=status), patch)["status"]
    assert after["phase"] == "Succeeded"
    assert after["metrics"] == {"wer": 0.12, "baselineWer": 0.2}
    assert "generation-1/adapter" in after["message"]
    assert after["completionTime"] == T1
    assert cond(after, "Succeeded")["reason"] == Reason.COMPLETED


def test_suspended_and_resumed():
    body = apply(resource(), observe(resource(), job(suspend=True), [], T0))
    assert body["status"]["phase"] == "Suspended"
    assert cond(body["status"], "Suspended")["status"] == "True"
    patch = observe(body, job(), [], T1)
    after = apply(body, patch)["status"]
    assert after["phase"] == "Pending"
    assert cond(after, "Suspended")["status"] == "False"
    assert cond(after, "Suspended")["reason"] == Reason.JOB_RESUMED
    event = transition_event(body["status"], patch)
    assert event is not None and event.reason == Reason.JOB_RESUMED


def test_kueue_suspended_condition_counts_as_suspended():
    j = job(conditions=[job_cond("Suspended", "JobSuspended")])
    assert observe(resource(), j, [], T0)["phase"] == "Suspended"


def test_last_transition_time_moves_only_on_a_flip_and_repeat_is_a_noop():
    unsched = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}
    b1 = apply(
        resource(), observe(resource(), job(), [pod(conditions=[dict(unsched, message="a")])], T0)
    )
    b2 = apply(b1, observe(b1, job(), [pod(conditions=[dict(unsched, message="b")])], T1))
    assert cond(b2["status"], "Running")["lastTransitionTime"] == T0  # still False
    assert observe(b2, job(), [pod(conditions=[dict(unsched, message="b")])], T1) == {}
    b3 = apply(b2, observe(b2, job(), [pod("Running", state={"running": {}})], T1))
    assert cond(b3["status"], "Running")["lastTransitionTime"] == T1  # flipped to True


def test_old_generation_status_is_replaced_for_a_new_run():
    old = {
        "phase": "Succeeded",
        "observedGeneration": 1,
        "adapterUri": "s3://models/y/ns/demo/generation-1/",
        "progress": {"step": 100},
        "conditions": [
            {
                "type": "Succeeded",
                "status": "True",
                "reason": "Completed",
                "message": "",
                "lastTransitionTime": T0,
            }
        ],
    }
    body = resource(generation=2, status=old)
    after = apply(body, observe(body, job(generation=2), [], T1))["status"]
    assert (after["phase"], after["observedGeneration"], after["jobName"]) == (
        "Pending",
        2,
        "demo-g2",
    )
    assert "adapterUri" not in after and "progress" not in after
    assert cond(after, "Succeeded")["status"] == "False"
    assert cond(after, "Accepted")["status"] == "True"


def test_trainer_report_before_the_operator_wrote_job_name_is_kept():
    """The operator was down while the trainer started: its report names the run by generation."""
    status = {"phase": "Training", "observedGeneration": 2, "progress": {"step": 5}}
    body = resource(generation=2, status=status)
    patch = observe(body, job(generation=2, active=1), [pod("Running", state={"running": {}})], T1)
    assert patch["jobName"] == "demo-g2"
    assert "phase" not in patch and "progress" not in patch


def test_invalid_spec_status_and_event():
    patch = spec_invalid(resource(generation=3), "spec.lora.rank: 0: must be at least 1", T0)
    assert patch["phase"] == "Failed" and patch["observedGeneration"] == 3
    assert cond(patch, "Accepted")["reason"] == Reason.INVALID_SPEC
    assert "spec.lora.rank" in cond(patch, "Failed")["message"]
    event = transition_event({}, patch)
    assert event is not None and (event.type, event.reason) == ("Warning", Reason.INVALID_SPEC)


def test_events_for_transitions():
    j = job(conditions=[job_cond("Failed", "BackoffLimitExceeded")])
    failed = observe(resource(), j, [pod("Failed", state=terminated("OOMKilled", 137))], T1)
    event = transition_event({"phase": "Training"}, failed)
    assert event is not None and (event.type, event.reason) == ("Warning", Reason.OOM_KILLED)
    done = observe(resource(), job(conditions=[job_cond("Complete")]), [], T1)
    event = transition_event({"phase": "Uploading"}, done)
    assert event is not None and (event.type, event.reason) == ("Normal", Reason.COMPLETED)
    assert transition_event({"phase": "Failed"}, {"phase": "Failed"}) is None
