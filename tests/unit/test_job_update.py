"""Run-neutral fields reach the live Job in place (`reconcile.job_update`), as pure data."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from wft_api.v1alpha1 import ResourceRef, WhisperFineTune
from wft_operator.reconcile import finished_without_job, job_update, retry_with_new_limits
from wft_operator.render import render_job
from wft_operator.settings import Settings

QUEUE = "kueue.x-k8s.io/queue-name"


def rendered(**spec: Any) -> dict[str, Any]:
    body = {"dataset": {"uri": "s3://data/x/"}, "output": {"uri": "s3://models/y/"}, **spec}
    resource = WhisperFineTune.model_validate({"metadata": {"name": "demo"}, "spec": body})
    return render_job(ResourceRef(name="demo", uid="u"), resource.spec, Settings())


def live(job: dict[str, Any], *conditions: str, suspended: bool | None = None) -> dict[str, Any]:
    out = copy.deepcopy(job)
    out["status"] = {"conditions": [{"type": t, "status": "True"} for t in conditions]}
    if suspended is not None:  # Kueue (or a user) suspended it, not the operator's annotation
        out["spec"]["suspend"] = suspended
    return out


def test_unchanged_is_no_patch():
    assert job_update(live(rendered()), rendered()) == (None, None, [])


def test_limits_and_ttl_of_a_running_job():
    first, then, notes = job_update(
        live(rendered(activeDeadlineSeconds=60)),
        rendered(activeDeadlineSeconds=7200, backoffLimit=5, ttlSecondsAfterFinished=30),
    )
    assert first is None and notes == []
    assert then == {
        "spec": {"activeDeadlineSeconds": 7200, "backoffLimit": 5, "ttlSecondsAfterFinished": 30}
    }
    _, removed, _ = job_update(live(rendered(activeDeadlineSeconds=60)), rendered())
    assert removed == {"spec": {"activeDeadlineSeconds": None}}  # merge patch: field removed


@pytest.mark.parametrize("condition", ["Complete", "Failed"])
def test_a_finished_job_takes_only_the_ttl(condition):
    job = live(rendered(), condition)
    _, then, _ = job_update(job, rendered(activeDeadlineSeconds=9, ttlSecondsAfterFinished=5))
    assert then == {"spec": {"ttlSecondsAfterFinished": 5}}


def test_suspend_follows_the_spec_not_the_jobs_state():
    # Kueue holds the Job (suspended) while the spec says run: the operator leaves it to Kueue.
    held = live(rendered(queueName="q"), suspended=True)
    assert job_update(held, rendered(queueName="q")) == (None, None, [])
    # The user suspends, then resumes: each is the spec's wish changing.
    _, then, _ = job_update(live(rendered()), rendered(suspend=True))
    assert then == {
        "spec": {"suspend": True},
        "metadata": {"annotations": {"wft.dev/suspend": "true"}},
    }
    _, then, _ = job_update(live(rendered(suspend=True)), rendered())
    assert then == {
        "spec": {"suspend": False},
        "metadata": {"annotations": {"wft.dev/suspend": "false"}},
    }


def test_queue_name_is_relabelled_only_while_suspended():
    _, then, notes = job_update(live(rendered()), rendered(queueName="q2"))
    assert then is None and "applies to the next run" in notes[0]
    first, then, _ = job_update(live(rendered(), suspended=True), rendered(queueName="q2"))
    assert first == {"metadata": {"labels": {QUEUE: "q2"}}} and then is None
    # Resumed in the same edit: relabelled first, while still suspended (Kueue's rule).
    first, then, _ = job_update(live(rendered(suspend=True)), rendered(queueName="q2"))
    assert first == {"metadata": {"labels": {QUEUE: "q2"}}}
    assert then is not None and then["spec"] == {"suspend": False}
    # Suspended by this very edit: relabelled with it.
    _, then, _ = job_update(live(rendered()), rendered(queueName="q2", suspend=True))
    assert then is not None and then["metadata"]["labels"] == {QUEUE: "q2"}


def test_only_a_failed_job_with_changed_limits_is_run_again():
    assert retry_with_new_limits(live(rendered(), "Failed"), rendered(activeDeadlineSeconds=9))
    assert retry_with_new_limits(live(rendered(), "Failed"), rendered(backoffLimit=6))
    assert not retry_with_new_limits(
        live(rendered(), "Failed"), rendered(ttlSecondsAfterFinished=1)
    )
    assert not retry_with_new_limits(live(rendered(), "Complete"), rendered(backoffLimit=6))
    assert not retry_with_new_limits(live(rendered()), rendered(backoffLimit=6))


def _body(phase: str, reason: str = "", generation: int = 2, observed: int = 2) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "observedGeneration": observed, "jobName": "demo-g1"}
    if reason:
        status["conditions"] = [{"type": "Failed", "status": "True", "reason": reason}]
    return {"metadata": {"generation": generation}, "status": status}


def test_a_finished_generation_without_its_job_is_not_run_again():
    assert finished_without_job(_body("Succeeded"), [])
    assert finished_without_job(_body("Failed", "BadData"), [])
    assert not finished_without_job(_body("Succeeded"), [{"metadata": {}}])
    assert not finished_without_job(_body("Succeeded", observed=1), [])  # a new spec
    assert not finished_without_job(_body("Failed", "ResourceConflict"), [])
    assert not finished_without_job(_body("Training"), [])
