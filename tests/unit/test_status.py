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
from wft_operator.status import observe, observe_change, spec_invalid

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
    name: str = "demo-g1-abcde",
) -> dict[str, Any]:
    cs = {"name": "trainer", "image": IMAGE, "state": state or {}, "lastState": last or {}}
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "status": {"phase": phase, "conditions": conditions or [], "containerStatuses": [cs]},
    }


def terminated(reason: str, code: int, message: str | None = None) -> dict[str, Any]:
    term: dict[str, Any] = {"reason": reason, "exitCode": code}
    if message is not None:
        term["message"] = message
    return {"terminated": term}


def cond(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == type_)


def true_conditions(status: dict[str, Any]) -> set[str]:
    return {c["type"] for c in status.get("conditions") or [] if c["status"] == "True"}


def report(stage: str, pod_name: str = "demo-g1-abcde", generation: int = 1, **more: Any) -> dict:
    """The trainer's report in status.trainer, as wft_trainer.status writes it."""
    return {"generation": generation, "pod": pod_name, "stage": stage, **more}


def running(name: str = "demo-g1-abcde", created: str = T0) -> dict[str, Any]:
    return pod("Running", state={"running": {}}, name=name, created=created)


def events(body: dict[str, Any], j: dict[str, Any], pods: list[dict[str, Any]], now: str = T1):
    return [(e.type, e.reason) for e in observe_change(body, j, pods, now).events]


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


def step(body: dict[str, Any], j: dict[str, Any], pods: list[dict[str, Any]], now: str = T1):
    """One observation applied: the new resource; never Succeeded and Failed both True."""
    patch = observe(body, j, pods, now)
    assert "trainer" not in patch  # the trainer's report is the trainer's alone
    after = apply(body, patch)
    assert {"Succeeded", "Failed"} - true_conditions(after["status"]), after["status"]
    assert {"Running", "Suspended"} - true_conditions(after["status"]), after["status"]
    return after


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
    running_ = cond(patch, "Running")
    assert (running_["status"], running_["reason"]) == ("False", Reason.UNSCHEDULABLE)
    assert patch["observedGeneration"] == 1 and patch["jobName"] == "demo-g1"
    assert ("Warning", Reason.UNSCHEDULABLE) in events(resource(), job(active=1), [p])
    # The scheduler's words change as nodes come and go: one Event per cause, not per message.
    body = apply(resource(), patch)
    later = [dict(p, status={**p["status"], "conditions": [dict(p["status"]["conditions"][0])]})]
    later[0]["status"]["conditions"][0]["message"] = "0/4 nodes are available"
    assert events(body, job(active=1), later) == []


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


def test_job_without_pods_is_pending_and_announced():
    patch = observe(resource(), job(), [], T0)
    assert patch["phase"] == "Pending" and cond(patch, "Running")["reason"] == Reason.JOB_CREATED
    assert cond(patch, "Accepted")["status"] == "True"
    assert events(resource(), job(), []) == [("Normal", Reason.JOB_CREATED)]


def test_running_pod_before_the_trainer_reports_is_preparing():
    patch = observe(resource(), job(active=1, startTime=T0), [running()], T0)
    assert patch["phase"] == "Preparing"
    assert patch["startTime"] == T0
    assert cond(patch, "Running")["status"] == "True"


@pytest.mark.parametrize("stage", ["Preparing", "Training", "Evaluating", "Uploading"])
def test_the_trainers_stage_becomes_the_phase(stage):
    status = {
        "jobName": "demo-g1",
        "trainer": report(stage, message="step 40/100", progress={"step": 40, "totalSteps": 100}),
    }
    patch = observe(resource(status=status), job(active=1), [running()], T1)
    assert (patch["phase"], patch["message"]) == (stage, "step 40/100")
    assert (cond(patch, "Running")["status"], cond(patch, "Running")["reason"]) == ("True", stage)


def test_a_report_of_an_earlier_attempt_or_run_does_not_count():
    earlier_attempt = {"jobName": "demo-g1", "trainer": report("Training", pod_name="demo-g1-old")}
    patch = observe(resource(status=earlier_attempt), job(active=1), [running()], T1)
    assert patch["phase"] == "Preparing" and "first report" in patch["message"]
    earlier_run = {"jobName": "demo-g1", "trainer": report("Training", generation=1)}
    patch = observe(resource(2, earlier_run), job(2, active=1), [running("demo-g2-x")], T1)
    assert patch["phase"] == "Preparing"


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
    assert patch["phase"] == "Pending"  # the Job has not failed: a pushed image still helps
    assert "Failed" not in {c["type"] for c in patch["conditions"]}
    assert cond(patch, "Running")["reason"] == Reason.IMAGE_PULL_FAILED
    assert IMAGE in patch["message"] and reason in patch["message"]
    assert ("Warning", Reason.IMAGE_PULL_FAILED) in events(
        resource(), job(active=1), [pod(state=waiting)]
    )


def test_image_pull_back_off_after_err_image_pull_is_one_event():
    first = [pod(state={"waiting": {"reason": "ErrImagePull", "message": "not found"}})]
    body = apply(resource(), observe(resource(), job(active=1), first, T0))
    again = [pod(state={"waiting": {"reason": "ImagePullBackOff", "message": "Back-off"}})]
    change = observe_change(body, job(active=1), again, T1)
    assert "ImagePullBackOff" in change.patch["message"] and change.events == ()


def test_a_missing_secret_is_named():
    waiting = {
        "waiting": {
            "reason": "CreateContainerConfigError",
            "message": 'secret "s3-credentials" not found',
        }
    }
    patch = observe(resource(), job(active=1), [pod(state=waiting)], T0)
    assert patch["phase"] == "Pending"
    assert cond(patch, "Running")["reason"] == Reason.CONTAINER_CONFIG_ERROR
    assert 'secret "s3-credentials" not found' in patch["message"]
    assert events(resource(), job(active=1), [pod(state=waiting)]) == [
        ("Normal", Reason.JOB_CREATED),
        ("Warning", Reason.CONTAINER_CONFIG_ERROR),
    ]


def test_an_exec_failure_is_the_cause_of_the_attempt():
    message = "exec: python: argument list too long"
    j = job(conditions=[job_cond("Failed", "BackoffLimitExceeded")], failed=1)
    j["spec"]["backoffLimit"] = 0
    patch = observe(
        resource(), j, [pod("Failed", state=terminated("StartError", 128, message))], T1
    )
    assert cond(patch, "Failed")["reason"] == Reason.CONTAINER_CANNOT_START
    assert "argument list too long" in patch["message"]
    waiting = {"waiting": {"reason": "RunContainerError", "message": message}}
    patch = observe(resource(), job(active=1), [pod(state=waiting)], T0)
    assert (patch["phase"], cond(patch, "Running")["reason"]) == (
        "Pending",
        Reason.CONTAINER_CANNOT_START,
    )


def test_crash_loop_with_exit_code():
    p = pod(state={"waiting": {"reason": "CrashLoopBackOff"}}, last=terminated("Error", 2))
    patch = observe(resource(), job(active=1), [p], T0)
    assert cond(patch, "Running")["reason"] == Reason.CRASH_LOOP
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
        pod("Failed", state=terminated("Error", 3), created=T1, name="demo-g1-fghij"),
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
    assert events(resource(), j, [pod("Failed", state=terminated("Error", 1, message))]) == [
        ("Normal", Reason.JOB_CREATED),
        ("Warning", "S3AccessDenied"),
    ]


def test_a_retry_is_running_again_with_the_previous_cause_and_never_failed():
    """Attempt 1 dies of OOM, attempt 2 trains and succeeds: the resource is never Failed."""
    t2 = "2026-11-24T10:30:00Z"
    oom = pod("Failed", state=terminated("OOMKilled", 137), created=T0, name="demo-g1-aaaaa")
    body = step(resource(), job(active=1), [running("demo-g1-aaaaa")], T0)
    # Between attempts (the Job's backoff delay): Pending, the cause named, no Failed=True.
    between = observe_change(body, job(active=0, failed=1), [oom], T0)
    assert between.patch["phase"] == "Pending"
    failed = cond(between.patch, "Failed")
    assert (failed["status"], failed["reason"]) == ("False", Reason.RETRYING)
    assert "attempt 1 failed (OOMKilled)" in failed["message"] and "retries" in failed["message"]
    assert [(e.type, e.reason) for e in between.events] == [("Warning", Reason.OOM_KILLED)]
    body = step(body, job(active=0, failed=1), [oom], T0)
    # Attempt 2 runs and reports: running again, the previous cause still in the condition.
    second = running("demo-g1-bbbbb", created=t2)
    body["status"]["trainer"] = report("Training", pod_name="demo-g1-bbbbb", message="step 3/10")
    body = step(body, job(active=1, failed=1), [oom, second], t2)
    assert (body["status"]["phase"], body["status"]["message"]) == ("Training", "step 3/10")
    assert "OOMKilled" in cond(body["status"], "Failed")["message"]
    assert observe_change(body, job(active=1, failed=1), [oom, second], t2).events == ()
    # It succeeds: Succeeded=True, Failed=False, never both True.
    body["status"]["trainer"]["adapterUri"] = "s3://models/y/ns/demo/generation-1/"
    done = job(conditions=[job_cond("Complete")], succeeded=1, failed=1, completionTime=T1)
    finished = [oom, pod("Succeeded", state=terminated("Completed", 0), created=t2, name="b")]
    change = observe_change(body, done, finished, T1)
    body = step(body, done, finished, T1)
    assert body["status"]["phase"] == "Succeeded" and "(attempt 2)" in body["status"]["message"]
    assert cond(body["status"], "Failed")["status"] == "False"
    assert [(e.type, e.reason) for e in change.events] == [("Normal", Reason.COMPLETED)]


def test_the_last_attempt_is_not_a_retry():
    permanent = json.dumps({"reason": "BadData", "message": "62% of the samples were skipped"})
    last = pod("Failed", state=terminated("Error", 3, permanent))
    change = observe_change(resource(), job(active=0, failed=1), [last], T1)
    assert change.patch["phase"] == "Pending"  # until the Job says Failed
    assert "Failed" not in {c["type"] for c in change.patch["conditions"]}
    assert "no retry is left" in change.patch["message"]
    assert ("Warning", "BadData") not in [(e.type, e.reason) for e in change.events]
    j = job(conditions=[job_cond("Failed", "PodFailurePolicy")], failed=1)
    after = step(apply(resource(), change.patch), j, [last], T1)["status"]
    assert (after["phase"], cond(after, "Failed")["reason"]) == ("Failed", "BadData")


def test_succeeded_names_the_trainers_adapter():
    status = {
        "jobName": "demo-g1",
        "trainer": report(
            "Succeeded",
            adapterUri="s3://models/y/ns/demo/generation-1/adapter/",
            metrics={"wer": 0.12, "baselineWer": 0.2},
        ),
    }
    j = job(conditions=[job_cond("Complete")], succeeded=1, completionTime=T1)
    pods = [pod("Succeeded", state=terminated("Completed", 0))]
    after = step(resource(status=status), j, pods, T1)["status"]
    assert after["phase"] == "Succeeded"
    assert after["trainer"] == status["trainer"]
    assert "generation-1/adapter" in after["message"]
    assert after["completionTime"] == T1
    assert cond(after, "Succeeded")["reason"] == Reason.COMPLETED
    assert ("Normal", Reason.COMPLETED) in events(resource(status=status), j, pods)


def test_suspended_and_resumed_keep_observed_generation_and_accepted_current():
    """spec.suspend bumps the generation but keeps the run (its Job of generation 1)."""
    body = step(resource(1), job(), [], T0)
    suspended = resource(2, body["status"])
    change = observe_change(suspended, job(1, suspend=True), [], T1)
    body = step(suspended, job(1, suspend=True), [], T1)
    assert body["status"]["phase"] == "Suspended"
    assert body["status"]["observedGeneration"] == 2
    assert cond(body["status"], "Accepted")["observedGeneration"] == 2
    assert cond(body["status"], "Suspended")["status"] == "True"
    assert [(e.type, e.reason) for e in change.events] == [("Normal", Reason.JOB_SUSPENDED)]
    resumed = resource(3, body["status"])
    resumed["status"]["trainer"] = report("Training", message="step 5/10")
    change = observe_change(resumed, job(1, active=1), [running()], T1)
    after = step(resumed, job(1, active=1), [running()], T1)["status"]
    assert (after["phase"], after["observedGeneration"]) == ("Training", 3)
    assert cond(after, "Accepted")["observedGeneration"] == 3
    assert cond(after, "Running")["observedGeneration"] == 3
    assert {c["observedGeneration"] for c in after["conditions"]} == {3}
    assert cond(after, "Suspended")["status"] == "False"
    assert cond(after, "Suspended")["reason"] == Reason.JOB_RESUMED
    assert [(e.type, e.reason) for e in change.events] == [("Normal", Reason.JOB_RESUMED)]


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
    assert observe_change(b2, job(), [pod(conditions=[dict(unsched, message="b")])], T1).patch == {}
    b3 = apply(b2, observe(b2, job(), [running()], T1))
    assert cond(b3["status"], "Running")["lastTransitionTime"] == T1  # flipped to True


def test_old_generation_status_is_replaced_for_a_new_run():
    old = {
        "phase": "Succeeded",
        "observedGeneration": 1,
        "jobName": "demo-g1",
        "startTime": T0,
        "completionTime": T0,
        "trainer": report("Succeeded", adapterUri="s3://models/y/ns/demo/generation-1/"),
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
    change = observe_change(body, job(generation=2), [], T1)
    after = step(body, job(generation=2), [], T1)["status"]
    assert (after["phase"], after["observedGeneration"], after["jobName"]) == (
        "Pending",
        2,
        "demo-g2",
    )
    assert "startTime" not in after and "completionTime" not in after
    assert after["trainer"] == old["trainer"]  # the trainer's; its generation says it is old
    assert cond(after, "Succeeded")["status"] == "False"
    assert cond(after, "Accepted")["status"] == "True"
    assert [(e.type, e.reason) for e in change.events] == [
        ("Normal", Reason.JOB_CREATED),
        ("Normal", Reason.SUPERSEDED),
    ]
    assert "demo-g1 was replaced by demo-g2" in change.events[1].message


def test_trainer_report_before_the_operator_wrote_job_name_counts():
    """The operator was down while the trainer started: its report names the run it is for."""
    status = {"trainer": report("Training", pod_name="demo-g2-x", generation=2)}
    body = resource(generation=2, status=status)
    patch = observe(body, job(generation=2, active=1), [running("demo-g2-x")], T1)
    assert patch["jobName"] == "demo-g2" and patch["phase"] == "Training"


def test_invalid_spec_status_and_event():
    change = spec_invalid(resource(generation=3), "spec.lora.rank: 0: must be at least 1", T0)
    patch = change.patch
    assert patch["phase"] == "Failed" and patch["observedGeneration"] == 3
    assert cond(patch, "Accepted")["reason"] == Reason.INVALID_SPEC
    assert "spec.lora.rank" in cond(patch, "Failed")["message"]
    assert [(e.type, e.reason) for e in change.events] == [("Warning", Reason.INVALID_SPEC)]
    again = spec_invalid(apply(resource(generation=3), patch), cond(patch, "Failed")["message"], T1)
    assert again.patch == {} and again.events == ()


# Several nodes (spec.resources.nodes): an Indexed Job, one pod per node; an attempt that fails
# fails every node's pod, created together, named <job>-<index>-<suffix>.


def nodes_job(nodes: int = 2, *, conditions=(), **status: Any) -> dict[str, Any]:
    body = resource()
    body["spec"]["resources"] = {"nodes": nodes}
    res = WhisperFineTune.model_validate(body)
    ref = ResourceRef(namespace="ns", name="demo", uid="u1", generation=1)
    j = render_job(ref, res.spec, Settings())
    j["status"] = {**status, "conditions": [dict(c) for c in conditions]}
    return j


def node_pod(index: int, code: int, message: str | None = None, created: str = T0) -> dict:
    p = pod(
        "Failed",
        state=terminated("Error", code, message),
        created=created,
        name=f"demo-g1-{index}-x",
    )
    p["metadata"]["annotations"] = {"batch.kubernetes.io/job-completion-index": str(index)}
    return p


def nodes_resource() -> dict[str, Any]:
    body = resource()
    body["spec"]["resources"] = {"nodes": 2}
    return body


COLLATERAL = json.dumps({"reason": "TrainerError", "message": "DistBackendError: peer closed"})


def test_several_nodes_rank_0s_diagnosis_is_the_cause_not_a_peers_exit_code():
    """Rank 0 found the data bad (exit 3); node 1, sorted newest by name, failed at its next
    collective with no message: the status names rank 0's diagnosis."""
    bad = json.dumps({"reason": "BadData", "message": "62% of the samples were skipped"})
    pods = [node_pod(0, 3, bad), node_pod(1, 1)]
    j = nodes_job(conditions=[job_cond("Failed", "PodFailurePolicy")], failed=2)
    patch = observe(nodes_resource(), j, pods, T1)
    assert (cond(patch, "Failed")["reason"], patch["message"]) == (
        "BadData",
        "62% of the samples were skipped",
    )


def test_several_nodes_a_nodes_own_diagnosis_wins_over_rank_0s_collateral():
    denied = json.dumps({"reason": "S3AccessDenied", "message": "prepared/: AccessDenied"})
    pods = [node_pod(0, 1, COLLATERAL), node_pod(1, 3, denied)]
    j = nodes_job(conditions=[job_cond("Failed", "PodFailurePolicy")], failed=2)
    patch = observe(nodes_resource(), j, pods, T1)
    assert cond(patch, "Failed")["reason"] == "S3AccessDenied"
    # Before the Job says Failed: the exit 3 of any node's pod leaves no retry.
    between = observe(nodes_resource(), nodes_job(active=0, failed=2), pods, T1)
    assert "attempt 1 failed (S3AccessDenied)" in between["message"]
    assert "no retry is left" in between["message"]


def test_several_nodes_count_attempts_not_pods_and_quote_the_specs_backoff_limit():
    t2 = "2026-11-24T10:30:00Z"
    first = [node_pod(0, 1, COLLATERAL), node_pod(1, 1)]
    j = nodes_job(active=0, failed=2)
    assert j["spec"]["backoffLimit"] == 4  # the spec's 2, for each of 2 nodes
    message = cond(observe(nodes_resource(), j, first, T1), "Failed")["message"]
    assert "attempt 1 failed (TrainerError)" in message
    assert "the Job retries (backoffLimit 2)" in message
    # Preempted: every node checkpointed and exited 143, which the Job ignores; three such
    # attempts after a real failure are not "no retry left" (the Job counts 2 of 4).
    preempted = [
        node_pod(i, 143, created=t) for t in (t2, T1, "2026-11-24T10:45:00Z") for i in (0, 1)
    ]
    between = observe(nodes_resource(), nodes_job(active=0, failed=8), first + preempted, T1)
    assert "no retry is left" not in between["message"]
    # Retries exhausted: 3 attempts of 2 pods each, "failed 3 times (backoffLimit 2)".
    t3 = "2026-11-24T10:50:00Z"
    failed = [node_pod(i, 1, created=t) for t in (T0, t2, t3) for i in (0, 1)]
    done = nodes_job(conditions=[job_cond("Failed", "BackoffLimitExceeded")], failed=6)
    patch = observe(nodes_resource(), done, failed, T1)
    assert "failed 3 times (backoffLimit 2)" in patch["message"]
