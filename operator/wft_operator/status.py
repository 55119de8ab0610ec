"""Status logic as pure functions: (resource, Job, Pods, now) in, a status patch and Events out.

One writer per field, as Kubeflow Trainer's TrainerStatus: the trainer writes `status.trainer`
(its stage, message, progress, metrics, dataset, adapter) and nothing else; the operator writes
everything else (phase, message, conditions, observedGeneration, jobName, start and completion
time), deriving it here from the Job, its Pods, the trainer's report and the trainer pod's
termination message. So nobody adjudicates between two writers: the Job says whether the run
succeeded or failed, the Pods say why an attempt failed or cannot start, the report says what
the trainer is doing while its pod runs.

- Phase Failed and `Failed=True` only once the Job has failed (its retries exhausted, or a
  podFailurePolicy rule failed it). While the Job retries, the run shows as running again and
  `Failed=False/Retrying` says what the previous attempt died of.
- A pod that cannot start (missing Secret, image pull, unschedulable, exec failure) leaves the
  run Pending with `Running=False` and the cause named; the Job has not failed, and fixing the
  cause lets the same pod start.
- Never two contradicting conditions: Succeeded and Failed are never True together, nor Running
  and Suspended.

Every function returns only the fields that change (an empty patch means "no write", so the
operator never patches for nothing) and the Events that the change announces.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from wft_api.conditions import (
    EXIT_PREEMPTED,
    PERMANENT_FAILURE_EXIT_CODE,
    TRAINER_REASONS,
    ConditionType,
    Reason,
    Status,
    set_condition,
    true_condition,
)
from wft_api.v1alpha1 import RUNNING_STAGES

from .render import CONTAINER_NAME, LABEL_GENERATION

Obj = Mapping[str, Any]
IMAGE_PULL_REASONS = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
)
# Container states of a runtime that could not create or start the process (containerd says
# StartError, Docker ContainerCannotRun; waiting: CreateContainerError, RunContainerError).
START_ERRORS = frozenset({"StartError", "ContainerCannotRun"})
WAITING_START_ERRORS = frozenset({"CreateContainerError", "RunContainerError"})
# Running=False reasons that need a person (a Warning Event each): the rest is just waiting.
START_PROBLEMS = frozenset(
    {
        Reason.UNSCHEDULABLE,
        Reason.IMAGE_PULL_FAILED,
        Reason.CONTAINER_CONFIG_ERROR,
        Reason.CONTAINER_CANNOT_START,
        Reason.CRASH_LOOP,
    }
)
_MAX_MESSAGE = 400


@dataclass(frozen=True)
class Cause:
    """Why a run is where it is: a named reason (wft_api.conditions.Reason) and words."""

    reason: str
    message: str


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event about the resource (events.k8s.io/v1: regarding the resource)."""

    type: str  # Normal or Warning
    reason: str
    message: str
    action: str = "Reconcile"  # what the operator did or saw (the Event's `action`)


@dataclass(frozen=True)
class Change:
    """A status patch (only the fields that change) and the Events it announces."""

    patch: dict[str, Any]
    events: tuple[Event, ...] = ()


def _get(obj: Obj | None, *path: str) -> Any:
    cur: Any = obj
    for key in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur


def _generation(resource: Obj) -> int:
    return int(_get(resource, "metadata", "generation") or 1)


def _container_statuses(pod: Obj) -> list[Obj]:
    statuses = _get(pod, "status", "containerStatuses") or []
    return [s for s in statuses if s.get("name") == CONTAINER_NAME] or list(statuses)


def _newest_first(pods: Sequence[Obj]) -> list[Obj]:
    return sorted(
        pods,
        key=lambda p: (
            str(_get(p, "metadata", "creationTimestamp") or ""),
            str(_get(p, "metadata", "name") or ""),
        ),
        reverse=True,
    )


# Where the Job controller writes a pod's index in an Indexed Job (spec.resources.nodes > 1):
# an annotation since Kubernetes 1.21, a label too since 1.28.
COMPLETION_INDEX_KEY = "batch.kubernetes.io/job-completion-index"


def _indexed(job: Obj) -> bool:
    return bool(_get(job, "spec", "completionMode") == "Indexed")


def _completion_index(pod: Obj) -> int | None:
    for where in ("annotations", "labels"):
        value = _get(pod, "metadata", where, COMPLETION_INDEX_KEY)
        if value is not None and str(value).isdigit():
            return int(value)
    return None


def _exited_preempted(pod: Obj) -> bool:
    return any(t.get("exitCode") == EXIT_PREEMPTED for t in _terminations(pod))


# The pods of one attempt of an Indexed Job are created within seconds of each other; its next
# attempt only after the last one failed and the Job controller's backoff (10 s and up).
_SAME_ATTEMPT_SECONDS = 30.0


def _telling(job: Obj, failed: Sequence[Obj]) -> Obj:
    """The pod whose end explains the newest failed attempt (`failed`: newest first).

    One pod per attempt on one node: the newest. An Indexed Job's attempt ends up to one pod
    per node, created together: a pod whose trainer diagnosed the cause (a node that could not
    fetch the shared data), else rank 0's pod (the one that evaluates and reports), not a peer
    that only saw its collective fail or checkpointed and stopped."""
    if not _indexed(job) or len(failed) == 1:
        return failed[0]
    newest = _created(failed[0])
    attempt = [p for p in failed if newest - _created(p) <= _SAME_ATTEMPT_SECONDS]

    def weight(pod: Obj) -> tuple[bool, bool, bool, bool]:
        reported = trainer_reported(pod)
        return (
            reported is not None and reported.reason != Reason.TRAINER_ERROR,
            reported is not None,
            not _exited_preempted(pod),
            _completion_index(pod) == 0,
        )

    return max(attempt, key=weight)  # max keeps the first (newest) of equals


def _created(pod: Obj) -> float:
    stamp = str(_get(pod, "metadata", "creationTimestamp") or "")
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _failed_attempt_count(job: Obj, failed: Sequence[Obj]) -> int:
    """Failed attempts, not pods: an Indexed Job's attempt fails every node's pod, and each
    attempt fails rank 0's (index 0): a node's failure takes it down at its next collective."""
    if not _indexed(job):
        return len(failed)
    firsts = [p for p in failed if _completion_index(p) == 0]
    nodes = int(_get(job, "spec", "completions") or 1)
    return len(firsts) or -(-len(failed) // nodes)


def _retries_allowed(job: Obj) -> int | None:
    """spec.backoffLimit as the user wrote it: the Job's own is that times the nodes."""
    limit = _get(job, "spec", "backoffLimit")
    if limit is None or not _indexed(job):
        return None if limit is None else int(limit)
    return int(limit) // max(1, int(_get(job, "spec", "completions") or 1))


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else "..." + text[-_MAX_MESSAGE:]


def _pod_name(pod: Obj) -> str:
    return str(_get(pod, "metadata", "name") or "")


def _pod_phase(pod: Obj) -> str:
    return str(_get(pod, "status", "phase") or "Pending")


def _terminations(pod: Obj) -> list[Obj]:
    """The trainer container's terminated states in one pod (current state, then the last)."""
    out = []
    for cs in _container_statuses(pod):
        for where in ("state", "lastState"):
            term = _get(cs, where, "terminated")
            if term:
                out.append(term)
    return out


def trainer_reported(pod: Obj) -> Cause | None:
    """The trainer's own diagnosis, from the JSON it writes to its termination message."""
    for term in _terminations(pod):
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


def _exit_detail(pod: Obj) -> str:
    for term in _terminations(pod):
        if term.get("exitCode"):
            detail = f"exit code {term['exitCode']}"
            if term.get("message"):
                detail += f": {_shorten(str(term['message']))}"
            return detail
    return ""


def _disrupted(pod: Obj) -> Obj | None:
    for cond in _get(pod, "status", "conditions") or []:
        if cond.get("type") == "DisruptionTarget" and cond.get("status") == "True":
            return dict(cond)
    if _get(pod, "status", "reason") in ("Evicted", "Preempting", "Terminated"):
        return {"reason": _get(pod, "status", "reason"), "message": _get(pod, "status", "message")}
    return None


def attempt_cause(job: Obj, pod: Obj) -> Cause:
    """What one failed attempt (one terminated trainer pod) died of, most specific first."""
    reported = trainer_reported(pod)
    if reported:
        return reported
    for term in _terminations(pod):
        if term.get("reason") == "OOMKilled":
            limit = _memory_limit(job)
            where = f" (memory limit {limit})" if limit else ""
            return Cause(
                Reason.OOM_KILLED,
                f"the trainer ran out of memory and was killed{where}; raise "
                "spec.resources.memory or lower spec.training.batchSize",
            )
        if term.get("reason") in START_ERRORS:
            detail = _shorten(str(term.get("message") or term.get("reason")))
            return Cause(
                Reason.CONTAINER_CANNOT_START, f"the trainer container could not start: {detail}"
            )
    disrupted = _disrupted(pod)
    if disrupted:
        why = _shorten(str(disrupted.get("message") or disrupted.get("reason") or "disrupted"))
        return Cause(
            Reason.POD_DISRUPTED,
            f"the trainer pod {_pod_name(pod)} was evicted or preempted ({why}); the next "
            "attempt resumes from the last checkpoint",
        )
    detail = _exit_detail(pod)
    return Cause(Reason.CONTAINER_FAILED, f"the trainer failed ({detail or 'no exit code'})")


def failure_cause(job: Obj, pods: Sequence[Obj]) -> Cause:
    """The cause of a failed Job in words: the Job's deadline, else its last attempt's cause."""
    failed = true_condition(job, "Failed") or {}
    if failed.get("reason") == "DeadlineExceeded":
        limit = _get(job, "spec", "activeDeadlineSeconds")
        return Cause(
            Reason.DEADLINE_EXCEEDED,
            f"the run took longer than activeDeadlineSeconds ({limit}s) and was stopped",
        )
    ended = [p for p in _newest_first(pods) if _terminations(p) or _pod_phase(p) == "Failed"]
    telling = _telling(job, ended) if ended else None
    last = attempt_cause(job, telling) if telling else None
    if last and last.reason != Reason.CONTAINER_FAILED:
        return last  # the trainer's own diagnosis, out of memory, a container that cannot start
    detail = _exit_detail(telling) if telling else ""
    if failed.get("reason") == "PodFailurePolicy":
        return Cause(
            Reason.CONTAINER_FAILED,
            f"the trainer failed for a cause a retry cannot fix ({detail or 'no exit code'})",
        )
    if failed.get("reason") == "BackoffLimitExceeded":
        limit = _retries_allowed(job)
        last_words = f"; last attempt: {detail}" if detail else ""
        return Cause(
            Reason.BACKOFF_LIMIT_EXCEEDED,
            f"the trainer failed {int(limit or 0) + 1} times (backoffLimit {limit}){last_words}",
        )
    return last or Cause(Reason.CONTAINER_FAILED, "the trainer Job failed")


def start_problem(pod: Obj) -> Cause | None:
    """Why a pod that has not started cannot start: image, config, runtime, scheduler."""
    for cs in _container_statuses(pod):
        waiting = _get(cs, "state", "waiting") or {}
        reason = waiting.get("reason")
        detail = _shorten(str(waiting.get("message") or ""))
        if reason in IMAGE_PULL_REASONS:
            image = cs.get("image") or "?"
            words = f": {detail}" if detail else ""
            return Cause(Reason.IMAGE_PULL_FAILED, f"cannot pull image {image} ({reason}){words}")
        if reason == "CreateContainerConfigError":
            return Cause(
                Reason.CONTAINER_CONFIG_ERROR,
                f"the trainer pod cannot start: {detail or reason} (CreateContainerConfigError); "
                "create what is missing in this namespace or fix its name in the spec",
            )
        if reason in WAITING_START_ERRORS:
            return Cause(
                Reason.CONTAINER_CANNOT_START,
                f"the trainer container could not start ({reason}): {detail or 'no detail'}",
            )
        if reason == "CrashLoopBackOff":
            code = _get(cs, "lastState", "terminated", "exitCode")
            return Cause(Reason.CRASH_LOOP, f"the trainer keeps crashing (last exit code {code})")
    for cond in _get(pod, "status", "conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            reason = cond.get("reason") or "Unschedulable"
            message = cond.get("message") or "the trainer pod cannot be scheduled"
            return Cause(Reason.UNSCHEDULABLE, _shorten(f"{reason}: {message}"))
    return None


def _running(pod: Obj) -> bool:
    if _pod_phase(pod) == "Running":
        return True
    return any(_get(cs, "state", "running") for cs in _container_statuses(pod))


def _failed_attempts(pods: Sequence[Obj]) -> list[Obj]:
    """Pods of the Job that failed, newest first (each a failed attempt)."""
    return [p for p in _newest_first(pods) if _pod_phase(p) == "Failed"]


def _no_retry_left(job: Obj, failed: Sequence[Obj]) -> bool:
    """The Job will not start another attempt: a podFailurePolicy rule fails it (the trainer's
    exit code for causes a retry cannot fix), or the failures reached backoffLimit."""
    if true_condition(job, "FailureTarget"):
        return True
    telling = _telling(job, failed)
    if any(t.get("exitCode") == PERMANENT_FAILURE_EXIT_CODE for t in _terminations(telling)):
        return True
    # What the Job controller counts: disruptions are not, nor (several nodes) exit 143.
    counted = [
        p for p in failed if _disrupted(p) is None and not (_indexed(job) and _exited_preempted(p))
    ]
    limit = _get(job, "spec", "backoffLimit")
    return len(counted) > (6 if limit is None else int(limit))


def trainer_report(status: Obj, job_generation: int) -> Obj | None:
    """The trainer's report when it is about this run (reports of earlier runs do not count)."""
    report = status.get("trainer")
    if not isinstance(report, Mapping) or report.get("generation") != job_generation:
        return None
    return report


class _Builder:
    """Accumulates desired status fields and Events; `change()` keeps only what differs."""

    def __init__(self, status: Obj, generation: int, now: str) -> None:
        self.status = status
        self.generation = generation
        self.now = now
        self.fields: dict[str, Any] = {}
        self.conditions: list[dict[str, object]] = [dict(c) for c in status.get("conditions") or []]
        self.events: list[Event] = []

    def _current(self, type_: str) -> dict[str, object]:
        return next((c for c in self.conditions if c.get("type") == type_), {})

    def cond(self, type_: str, value: Status, reason: str, message: str = "") -> bool:
        """Set a condition; True when its status, reason or message changed."""
        old = self._current(type_)
        self.conditions = set_condition(
            self.conditions, type_, value, reason, message, self.generation, self.now
        )
        return (old.get("status"), old.get("reason"), old.get("message")) != (
            value,
            reason,
            message,
        )

    def turn(self, type_: str, value: Status, reason: str, message: str = "") -> bool:
        """Set a condition; True when its status flipped to `value` (or it is new)."""
        before = self._current(type_).get("status")
        self.cond(type_, value, reason, message)
        return before != value

    def clear(self, type_: str, reason: str, message: str = "") -> bool:
        """Set a condition False only where it exists: no noise of conditions never True.
        True when it was True before (a flip worth announcing)."""
        current = self._current(type_)
        if not current:
            return False
        self.cond(type_, "False", reason, message)
        return current.get("status") == "True"

    def event(self, type_: str, reason: str, message: str, action: str) -> None:
        self.events.append(Event(type_, reason, message, action))

    def change(self) -> Change:
        # Every condition is re-derived for the current spec, also those left as they were.
        conditions = [{**c, "observedGeneration": self.generation} for c in self.conditions]
        desired = {**self.fields, "conditions": conditions}
        out = {}
        for key, value in desired.items():
            current = self.status.get(key)
            if value is None and current is None:
                continue
            if current != value:
                out[key] = value
        return Change(out, tuple(self.events) if out else ())


def observe(resource: Obj, job: Obj | None, pods: Sequence[Obj], now: str) -> dict[str, Any]:
    """The status fields to patch so that status describes `job` (the current run) and `pods`."""
    return observe_change(resource, job, pods, now).patch


def observe_change(resource: Obj, job: Obj | None, pods: Sequence[Obj], now: str) -> Change:
    """`observe`, with the Events the change announces.

    `job` must be the Job of the resource's current spec (the operator picks it); None means
    no Job exists yet and nothing is said.
    """
    if job is None:
        return Change({})
    current: Obj = _get(resource, "status") or {}
    generation = _generation(resource)
    job_name = str(_get(job, "metadata", "name"))
    job_generation = int(_get(job, "metadata", "labels", LABEL_GENERATION) or generation)
    b = _Builder(current, generation, now)
    b.fields.update(observedGeneration=generation, jobName=job_name)
    b.cond(ConditionType.ACCEPTED, "True", Reason.SPEC_VALID, "the spec is valid")
    run = current
    if current.get("jobName") != job_name:
        run = {}  # what the status said was about an earlier run
        b.fields.update(startTime=None, completionTime=None)
        for type_ in (ConditionType.SUCCEEDED, ConditionType.FAILED):
            b.clear(type_, Reason.SUPERSEDED, "a new run replaced the previous one")
        b.event(
            "Normal",
            Reason.JOB_CREATED,
            f"created Job {job_name} for generation {job_generation}",
            "Create",
        )
        if current.get("jobName"):
            b.event(
                "Normal",
                Reason.SUPERSEDED,
                f"Job {current['jobName']} was replaced by {job_name}: the spec changed "
                f"(generation {job_generation})",
                "Replace",
            )
    b.fields["startTime"] = run.get("startTime") or _get(job, "status", "startTime")
    report = trainer_report(current, job_generation)
    failed_pods = _failed_attempts(pods)
    completion = _get(job, "status", "completionTime") or run.get("completionTime") or now

    if true_condition(job, "Complete"):
        adapter = (report or {}).get("adapterUri")
        message = f"the adapter is in {adapter}" if adapter else "the trainer Job completed"
        if failed_pods:
            message += f" (attempt {_failed_attempt_count(job, failed_pods) + 1})"
        b.fields.update(phase="Succeeded", message=message, completionTime=completion)
        if b.turn(ConditionType.SUCCEEDED, "True", Reason.COMPLETED, message):
            b.event("Normal", Reason.COMPLETED, message, "Complete")
        b.clear(ConditionType.RUNNING, Reason.COMPLETED, "the run is over")
        b.clear(ConditionType.FAILED, Reason.COMPLETED, "the run succeeded")
        b.clear(ConditionType.SUSPENDED, Reason.COMPLETED, "the run is over")
        return b.change()

    if true_condition(job, "Failed"):
        cause = failure_cause(job, pods)
        b.fields.update(phase="Failed", message=cause.message, completionTime=completion)
        if b.turn(ConditionType.FAILED, "True", cause.reason, cause.message):
            b.event("Warning", cause.reason, cause.message, "Fail")
        b.clear(ConditionType.RUNNING, cause.reason, "the run is over")
        b.clear(ConditionType.SUSPENDED, cause.reason, "the run is over")
        return b.change()

    b.fields["completionTime"] = None
    if _get(job, "spec", "suspend") or true_condition(job, "Suspended"):
        message = "the trainer Job is suspended (spec.suspend or the queue holds it)"
        b.fields.update(phase="Suspended", message=message)
        if b.turn(ConditionType.SUSPENDED, "True", Reason.JOB_SUSPENDED, message):
            b.event("Normal", Reason.JOB_SUSPENDED, message, "Suspend")
        b.clear(ConditionType.RUNNING, Reason.JOB_SUSPENDED, message)
        return b.change()
    if b.clear(ConditionType.SUSPENDED, Reason.JOB_RESUMED, "the trainer Job was resumed"):
        b.event("Normal", Reason.JOB_RESUMED, "the trainer Job was resumed", "Resume")

    # The Job runs (or will): retries, then the newest pod's state.
    newest = _newest_first(pods)[0] if pods else None
    failing: Cause | None = None
    if failed_pods:
        cause = attempt_cause(job, _telling(job, failed_pods))
        attempts = _failed_attempt_count(job, failed_pods)
        attempt = f"attempt {attempts} failed ({cause.reason}): {cause.message}"
        if _no_retry_left(job, failed_pods):
            # The Job will fail in a moment (its Failed condition, and the Event, follow).
            failing = Cause(cause.reason, f"{attempt}; no retry is left, the Job is failing")
        else:
            limit = _retries_allowed(job)
            message = f"{attempt}; the Job retries (backoffLimit {limit})"
            if b.cond(ConditionType.FAILED, "False", Reason.RETRYING, message):
                b.event("Warning", cause.reason, message, "Retry")
    if newest is not None and _running(newest):
        name = _pod_name(newest)
        ours = report is not None and report.get("pod") in (None, name)
        stage = str((report or {}).get("stage") or "")
        said = str((report or {}).get("message") or stage)
        if ours and stage in RUNNING_STAGES:
            phase, message = stage, said
        elif ours and current.get("phase") in RUNNING_STAGES:
            # Succeeded or Failed in the trainer's words; the Job will say so in a moment.
            phase, message = str(current["phase"]), said
        else:
            phase = Reason.PREPARING
            message = f"the trainer pod {name} is running; waiting for its first report"
        b.fields.update(phase=phase, message=message)
        b.cond(ConditionType.RUNNING, "True", phase, message)
        return b.change()
    if newest is not None and _pod_phase(newest) == "Succeeded":
        # The trainer is done; the Job controller has not said Complete yet.
        phase = str(current.get("phase") or "")
        b.fields.update(phase=phase if phase in RUNNING_STAGES else "Uploading")
        b.fields["message"] = "the trainer finished; waiting for the Job to complete"
        b.cond(ConditionType.RUNNING, "False", Reason.COMPLETED, b.fields["message"])
        return b.change()
    if failing is not None and newest is failed_pods[0]:
        waiting = failing
    elif newest is not None and _pod_phase(newest) == "Failed":
        waiting = Cause(Reason.RETRYING, "waiting for the Job to start the next attempt")
    elif newest is not None:
        waiting = start_problem(newest) or Cause(
            Reason.POD_PENDING, f"waiting for the trainer pod {_pod_name(newest)} to start"
        )
    else:
        waiting = Cause(Reason.JOB_CREATED, f"Job {job_name} created; waiting for its pod")
    b.fields.update(phase="Pending", message=waiting.message)
    before = b._current(ConditionType.RUNNING).get("reason")
    changed = b.cond(ConditionType.RUNNING, "False", waiting.reason, waiting.message)
    # Once per cause: the kubelet's and the scheduler's words change as they retry.
    new_cause = before != waiting.reason or waiting.reason not in _FLAPPING
    if changed and waiting.reason in START_PROBLEMS and new_cause:
        b.event("Warning", waiting.reason, waiting.message, "Start")
    return b.change()


# Causes whose words change on every retry of the kubelet or scheduler (ErrImagePull and
# ImagePullBackOff alternate; "0/3 nodes" becomes "0/4 nodes"): one Event per cause.
_FLAPPING = frozenset({Reason.IMAGE_PULL_FAILED, Reason.UNSCHEDULABLE})


def spec_invalid(resource: Obj, message: str, now: str) -> Change:
    """An invalid spec: Failed with InvalidSpec and the field named; no Job runs for it."""
    status: Obj = _get(resource, "status") or {}
    b = _Builder(status, _generation(resource), now)
    b.fields.update(
        observedGeneration=b.generation,
        phase="Failed",
        message=message,
        jobName=None,
        startTime=None,
        completionTime=None,
    )
    b.cond(ConditionType.ACCEPTED, "False", Reason.INVALID_SPEC, message)
    if b.cond(ConditionType.FAILED, "True", Reason.INVALID_SPEC, message):
        b.event("Warning", Reason.INVALID_SPEC, message, "Validate")
    b.clear(ConditionType.RUNNING, Reason.INVALID_SPEC, message)
    b.clear(ConditionType.SUCCEEDED, Reason.INVALID_SPEC, message)
    b.clear(ConditionType.SUSPENDED, Reason.INVALID_SPEC, message)
    return b.change()


def blocked(resource: Obj, reason: str, message: str, now: str) -> Change:
    """The spec is valid, but the operator cannot go on until a person acts (an object of the
    name it needs belongs to someone else): Failed with `reason`, nothing created or changed,
    a Warning Event when it starts. The operator checks again about every 30 s, and the run
    starts once the way is clear."""
    status: Obj = _get(resource, "status") or {}
    b = _Builder(status, _generation(resource), now)
    b.fields.update(observedGeneration=b.generation, phase="Failed", message=message)
    b.cond(ConditionType.ACCEPTED, "True", Reason.SPEC_VALID, "the spec is valid")
    if b.cond(ConditionType.FAILED, "True", reason, message):
        b.event("Warning", reason, message, "Create")
    b.clear(ConditionType.RUNNING, reason, message)
    b.clear(ConditionType.SUCCEEDED, reason, message)
    return b.change()
