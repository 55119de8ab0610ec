"""Status logic as pure functions: (resource, Job, Pods, now) in, a status patch out.

The operator owns the phases around a run (Pending, Suspended, Succeeded, Failed for causes the
cluster reports); the trainer owns the running phases (Preparing, Training, Evaluating,
Uploading) and the failures it diagnoses itself (bad data, S3 access denied). Neither
overwrites the other: a trainer-reported failure is kept, and a running phase is left alone
while the Job runs. Every function returns only the fields that change, so an empty dict means
"no write" and the operator never patches for nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wft_api.conditions import TRAINER_REASONS, ConditionType, Reason, Status, set_condition

from .render import CONTAINER_NAME, LABEL_GENERATION

Obj = Mapping[str, Any]
RUNNING_PHASES = frozenset({"Preparing", "Training", "Evaluating", "Uploading"})
IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName"})
_MAX_MESSAGE = 400


@dataclass(frozen=True)
class Cause:
    """Why a run is where it is: a named reason (wft_api.conditions.Reason) and words."""

    reason: str
    message: str


def _get(obj: Obj | None, *path: str) -> Any:
    cur: Any = obj
    for key in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur


def _generation(resource: Obj) -> int:
    return int(_get(resource, "metadata", "generation") or 1)


def _job_condition(job: Obj, type_: str) -> Obj | None:
    for cond in _get(job, "status", "conditions") or []:
        if cond.get("type") == type_ and cond.get("status") == "True":
            return dict(cond)
    return None


def _container_statuses(pod: Obj) -> list[Obj]:
    statuses = _get(pod, "status", "containerStatuses") or []
    return [s for s in statuses if s.get("name") == CONTAINER_NAME] or list(statuses)


def _newest_first(pods: Sequence[Obj]) -> list[Obj]:
    return sorted(
        pods, key=lambda p: str(_get(p, "metadata", "creationTimestamp") or ""), reverse=True
    )


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else "..." + text[-_MAX_MESSAGE:]


def _terminations(pods: Sequence[Obj]) -> list[Obj]:
    """Terminated container states, newest pod first (current state, then the last one)."""
    out = []
    for pod in _newest_first(pods):
        for cs in _container_statuses(pod):
            for where in ("state", "lastState"):
                term = _get(cs, where, "terminated")
                if term:
                    out.append(term)
    return out


def trainer_reported(pods: Sequence[Obj]) -> Cause | None:
    """The trainer's own diagnosis, from the JSON it writes to its termination message."""
    for term in _terminations(pods):
        try:
            data = json.loads(term.get("message") or "")
        except (json.JSONDecodeError, TypeError):
            continue
        if isinstance(data, dict) and data.get("reason") in TRAINER_REASONS:
            return Cause(str(data["reason"]), _shorten(str(data.get("message") or "")))
    return None


def _memory_limit(job: Obj) -> str | None:
    for c in _get(job, "spec", "template", "spec", "containers") or []:
        if c.get("name") == CONTAINER_NAME:
            limit = _get(c, "resources", "limits", "memory")
            return str(limit) if limit else None
    return None


def _pod_cause(job: Obj, pods: Sequence[Obj]) -> Cause | None:
    """What the Pods say went wrong: out of memory, image pull, crash loop (None if nothing)."""
    for term in _terminations(pods):
        if term.get("reason") == "OOMKilled":
            limit = _memory_limit(job)
            where = f" (memory limit {limit})" if limit else ""
            return Cause(
                Reason.OOM_KILLED,
                f"the trainer ran out of memory and was killed{where}; raise "
                "spec.resources.memory or lower spec.training.batchSize",
            )
    for pod in _newest_first(pods):
        for cs in _container_statuses(pod):
            waiting = _get(cs, "state", "waiting") or {}
            reason = waiting.get("reason")
            if reason in IMAGE_PULL_REASONS:
                image = cs.get("image") or "?"
                detail = f": {_shorten(waiting['message'])}" if waiting.get("message") else ""
                return Cause(
                    Reason.IMAGE_PULL_FAILED, f"cannot pull image {image} ({reason}){detail}"
                )
            if reason == "CrashLoopBackOff":
                code = _get(cs, "lastState", "terminated", "exitCode")
                return Cause(
                    Reason.CRASH_LOOP, f"the trainer keeps crashing (last exit code {code})"
                )
    return None


def _exit_detail(pods: Sequence[Obj]) -> str:
    for term in _terminations(pods):
        if term.get("exitCode"):
            detail = f"exit code {term['exitCode']}"
            if term.get("message"):
                detail += f": {_shorten(str(term['message']))}"
            return detail
    return ""


def failure_cause(job: Obj, pods: Sequence[Obj]) -> Cause:
    """The cause of a failed Job in words, the most specific explanation first."""
    reported = trainer_reported(pods)
    if reported:
        return reported
    failed = _job_condition(job, "Failed") or {}
    if failed.get("reason") == "DeadlineExceeded":
        limit = _get(job, "spec", "activeDeadlineSeconds")
        return Cause(
            Reason.DEADLINE_EXCEEDED,
            f"the run took longer than activeDeadlineSeconds ({limit}s) and was stopped",
        )
    cause = _pod_cause(job, pods)
    if cause:
        return cause
    detail = _exit_detail(pods)
    if failed.get("reason") == "PodFailurePolicy":
        return Cause(
            Reason.CONTAINER_FAILED,
            f"the trainer failed for a cause a retry cannot fix ({detail or 'no exit code'})",
        )
    if failed.get("reason") == "BackoffLimitExceeded":
        limit = _get(job, "spec", "backoffLimit")
        last = f"; last attempt: {detail}" if detail else ""
        return Cause(
            Reason.BACKOFF_LIMIT_EXCEEDED,
            f"the trainer failed {int(limit or 0) + 1} times (backoffLimit {limit}){last}",
        )
    return Cause(Reason.CONTAINER_FAILED, f"the trainer failed ({detail or 'no exit code'})")


def unschedulable(pods: Sequence[Obj]) -> Cause | None:
    """The scheduler's reason a pod waits (no node with a free GPU, untolerated taints)."""
    for pod in _newest_first(pods):
        for cond in _get(pod, "status", "conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                reason = cond.get("reason") or "Unschedulable"
                message = cond.get("message") or "the trainer pod cannot be scheduled"
                return Cause(Reason.UNSCHEDULABLE, _shorten(f"{reason}: {message}"))
    return None


def _pod_running(pods: Sequence[Obj]) -> bool:
    for pod in pods:
        if _get(pod, "status", "phase") == "Running":
            return True
        if any(_get(cs, "state", "running") for cs in _container_statuses(pod)):
            return True
    return False


def _trainer_failure(status: Obj, generations: set[int]) -> str | None:
    """The reason of a failure the trainer reported for this run, if it did."""
    if status.get("phase") != "Failed" or status.get("observedGeneration") not in generations:
        return None
    cond: Obj = next((c for c in status.get("conditions") or [] if c.get("type") == "Failed"), {})
    reason = cond.get("reason")
    return str(reason) if cond.get("status") == "True" and reason in TRAINER_REASONS else None


class _Builder:
    """Accumulates desired status fields; `changes()` keeps only those that differ."""

    def __init__(self, status: Obj, generation: int, now: str) -> None:
        self.status = status
        self.generation = generation
        self.now = now
        self.fields: dict[str, Any] = {}
        self.conditions: list[dict[str, object]] = [dict(c) for c in status.get("conditions") or []]

    def cond(self, type_: str, value: Status, reason: str, message: str = "") -> None:
        self.conditions = set_condition(
            self.conditions, type_, value, reason, message, self.generation, self.now
        )

    def clear(self, type_: str, reason: str, message: str = "") -> None:
        """Set a condition False only where it exists: no noise of conditions never True."""
        if any(c.get("type") == type_ for c in self.conditions):
            self.cond(type_, "False", reason, message)

    def changes(self) -> dict[str, Any]:
        desired = {**self.fields, "conditions": self.conditions}
        out = {}
        for key, value in desired.items():
            current = self.status.get(key)
            if value is None and current is None:
                continue
            if current != value:
                out[key] = value
        return out


def observe(resource: Obj, job: Obj | None, pods: Sequence[Obj], now: str) -> dict[str, Any]:
    """The status fields to patch so that status describes `job` (the current run) and `pods`.

    `job` must be the Job of the resource's current spec (the operator picks it); None means
    no Job exists yet and nothing is said. Returns {} when the status is already right.
    """
    if job is None:
        return {}
    current: Obj = _get(resource, "status") or {}
    generation = _generation(resource)
    job_name = str(_get(job, "metadata", "name"))
    job_generation = int(_get(job, "metadata", "labels", LABEL_GENERATION) or generation)
    same_run = {generation, job_generation}
    b = _Builder(current, generation, now)
    b.fields["observedGeneration"] = generation
    b.fields["jobName"] = job_name
    # What the status says about this run; an earlier run's report does not count. The
    # trainer stamps observedGeneration with its Job's generation, so its reports count even
    # when the operator has not written jobName yet (it was down, or raced the trainer).
    status = current
    if current.get("jobName") != job_name and current.get("observedGeneration") not in same_run:
        status = {}
        for key in ("startTime", "completionTime", "progress", "metrics", "dataset", "adapterUri"):
            b.fields[key] = None
        b.cond(ConditionType.ACCEPTED, "True", Reason.SPEC_VALID, "the spec is valid")
        b.clear(ConditionType.SUCCEEDED, Reason.SUPERSEDED, "a new run replaced the previous one")
        b.clear(ConditionType.FAILED, Reason.SUPERSEDED, "a new run replaced the previous one")
    if _get(job, "status", "startTime") and not status.get("startTime"):
        b.fields["startTime"] = _get(job, "status", "startTime")
    completion = _get(job, "status", "completionTime") or status.get("completionTime") or now

    reported = _trainer_failure(status, same_run)
    if reported:
        # The trainer said why it failed (bad data, S3 denied); the Job's view adds nothing.
        if _job_condition(job, "Failed") or _job_condition(job, "Complete"):
            b.fields["completionTime"] = completion
            b.clear(ConditionType.RUNNING, reported)
        return b.changes()

    if _job_condition(job, "Complete"):
        adapter = status.get("adapterUri")
        message = f"the adapter is in {adapter}" if adapter else "the trainer Job completed"
        b.fields.update(phase="Succeeded", message=message, completionTime=completion)
        b.cond(ConditionType.SUCCEEDED, "True", Reason.COMPLETED, message)
        b.clear(ConditionType.RUNNING, Reason.COMPLETED)
        b.clear(ConditionType.FAILED, Reason.COMPLETED)
        b.clear(ConditionType.SUSPENDED, Reason.COMPLETED)
        return b.changes()

    if _job_condition(job, "Failed"):
        cause = failure_cause(job, pods)
        b.fields.update(phase="Failed", message=cause.message, completionTime=completion)
        b.cond(ConditionType.FAILED, "True", cause.reason, cause.message)
        b.clear(ConditionType.RUNNING, cause.reason)
        b.clear(ConditionType.SUSPENDED, cause.reason)
        return b.changes()

    if _get(job, "spec", "suspend") or _job_condition(job, "Suspended"):
        message = "the trainer Job is suspended (spec.suspend or the queue holds it)"
        b.fields.update(phase="Suspended", message=message)
        b.cond(ConditionType.SUSPENDED, "True", Reason.JOB_SUSPENDED, message)
        b.clear(ConditionType.RUNNING, Reason.JOB_SUSPENDED)
        return b.changes()

    b.clear(ConditionType.SUSPENDED, Reason.JOB_RESUMED, "the trainer Job was resumed")
    # A running Job: infrastructure trouble first, then the phase of the run.
    stuck = _pod_cause(job, pods)
    if stuck and stuck.reason in (Reason.IMAGE_PULL_FAILED, Reason.CRASH_LOOP):
        # The Job itself would wait forever (or until its deadline): say so now.
        b.fields.update(phase="Failed", message=stuck.message)
        b.cond(ConditionType.FAILED, "True", stuck.reason, stuck.message)
        b.clear(ConditionType.RUNNING, stuck.reason)
        return b.changes()
    b.clear(ConditionType.FAILED, Reason.JOB_CREATED, "the trainer is running again")
    trainer_phase = status.get("phase") in RUNNING_PHASES and (
        status.get("observedGeneration") in same_run
    )
    if trainer_phase:
        # The trainer reports its own phase, message and progress; the operator stays out.
        if not _condition_true(b.conditions, ConditionType.RUNNING):
            b.cond(ConditionType.RUNNING, "True", str(status["phase"]), "the trainer is running")
        return b.changes()
    if _pod_running(pods):
        message = "the trainer pod is running; waiting for its first report"
        b.fields.update(phase="Preparing", message=message)
        b.cond(ConditionType.RUNNING, "True", Reason.PREPARING, message)
        return b.changes()
    waiting = unschedulable(pods) or Cause(
        Reason.POD_PENDING if pods else Reason.JOB_CREATED,
        "waiting for the trainer pod to start" if pods else f"Job {b.fields['jobName']} created",
    )
    b.fields.update(phase="Pending", message=waiting.message)
    b.cond(ConditionType.RUNNING, "False", waiting.reason, waiting.message)
    return b.changes()


def _condition_true(conditions: list[dict[str, object]], type_: str) -> bool:
    return any(c.get("type") == type_ and c.get("status") == "True" for c in conditions)


def spec_invalid(resource: Obj, message: str, now: str) -> dict[str, Any]:
    """An invalid spec: Failed with InvalidSpec and the field named; no Job runs for it."""
    status: Obj = _get(resource, "status") or {}
    b = _Builder(status, _generation(resource), now)
    b.fields.update(observedGeneration=b.generation, phase="Failed", message=message, jobName=None)
    b.cond(ConditionType.ACCEPTED, "False", Reason.INVALID_SPEC, message)
    b.cond(ConditionType.FAILED, "True", Reason.INVALID_SPEC, message)
    b.clear(ConditionType.RUNNING, Reason.INVALID_SPEC, message)
    b.clear(ConditionType.SUCCEEDED, Reason.INVALID_SPEC, message)
    return b.changes()


def blocked(resource: Obj, reason: str, message: str, now: str) -> dict[str, Any]:
    """The spec is valid, but the operator cannot go on until a person acts (an object of the
    name it needs belongs to someone else): Failed with `reason`, nothing created or changed.
    The operator checks again every 30 s, and the run starts once the way is clear."""
    status: Obj = _get(resource, "status") or {}
    b = _Builder(status, _generation(resource), now)
    b.fields.update(observedGeneration=b.generation, phase="Failed", message=message)
    b.cond(ConditionType.ACCEPTED, "True", Reason.SPEC_VALID, "the spec is valid")
    b.cond(ConditionType.FAILED, "True", reason, message)
    b.clear(ConditionType.RUNNING, reason, message)
    b.clear(ConditionType.SUCCEEDED, reason, message)
    return b.changes()


@dataclass(frozen=True)
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


def transition_event(old: Obj, patch: Mapping[str, Any]) -> Event | None:
    """The Kubernetes Event that announces a phase change made by `patch` (None: no change)."""
    new_phase = patch.get("phase")
    if not new_phase or new_phase == old.get("phase"):
        return None
    message = str(patch.get("message") or old.get("message") or "")
    if new_phase == "Failed":
        failed: Obj = next(
            (c for c in patch.get("conditions") or [] if c.get("type") == "Failed"), {}
        )
        return Event("Warning", str(failed.get("reason") or "Failed"), message)
    if new_phase == "Succeeded":
        return Event("Normal", Reason.COMPLETED, message)
    if new_phase == "Suspended":
        return Event("Normal", Reason.JOB_SUSPENDED, message)
    if old.get("phase") == "Suspended":
        return Event("Normal", Reason.JOB_RESUMED, message)
    if new_phase == "Pending":
        running: Obj = next(
            (c for c in patch.get("conditions") or [] if c.get("type") == "Running"), {}
        )
        return Event("Normal", str(running.get("reason") or "Pending"), message)
    return Event("Normal", new_phase, message)
