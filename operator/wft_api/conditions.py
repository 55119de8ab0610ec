"""Status conditions: named types and reasons, and the one function that sets a condition.

The operator alone sets conditions (deriving them from the Job, its Pods, the trainer's report
in `status.trainer` and the trainer pod's termination message); the trainer names its own
failures with the same Reason constants in its termination message. Follows the Kubernetes
API conventions and cert-manager's `SetCondition`: conditions are keyed by type, and
`lastTransitionTime` moves only when a condition's status flips.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal


class ConditionType:
    ACCEPTED = "Accepted"  # the spec passed validation; False with InvalidSpec otherwise
    RUNNING = "Running"  # the trainer pod of the current run runs; False: why it does not (yet)
    SUSPENDED = "Suspended"  # spec.suspend (or Kueue) holds the Job
    SUCCEEDED = "Succeeded"  # the Job of the current run completed: the adapter is in S3
    # True only once the Job has failed (no retry left); reason names the cause. False with
    # Retrying while the Job retries: the message says what the last attempt died of.
    FAILED = "Failed"


class Reason:
    # Accepted
    SPEC_VALID = "SpecValid"
    INVALID_SPEC = "InvalidSpec"
    # Running / progress
    JOB_CREATED = "JobCreated"
    UNSCHEDULABLE = "Unschedulable"
    POD_PENDING = "PodPending"
    RETRYING = "Retrying"  # an attempt failed and the Job starts another one
    # Why a trainer pod cannot start (Running=False; the Job waits, it has not failed)
    CONTAINER_CONFIG_ERROR = "CreateContainerConfigError"  # a missing Secret, ConfigMap or key
    CONTAINER_CANNOT_START = "ContainerCannotStart"  # the runtime could not create or exec it
    PREPARING = "Preparing"
    TRAINING = "Training"
    EVALUATING = "Evaluating"
    UPLOADING = "Uploading"
    SUPERSEDED = "Superseded"  # a new generation replaced this run
    # Failed: an object of the name this resource needs belongs to someone else (left as is)
    RESOURCE_CONFLICT = "ResourceConflict"
    # Suspended
    JOB_SUSPENDED = "JobSuspended"
    JOB_RESUMED = "JobResumed"
    # Succeeded
    COMPLETED = "Completed"
    # Failed: infrastructure (seen by the operator on the Job and its Pods)
    OOM_KILLED = "OOMKilled"
    IMAGE_PULL_FAILED = "ImagePullFailed"
    CRASH_LOOP = "CrashLoopBackOff"
    CONTAINER_FAILED = "ContainerFailed"  # non-zero exit code, no better explanation
    POD_DISRUPTED = "PodDisrupted"  # evicted or preempted (not counted against backoffLimit)
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    # Failed: diagnosed by the trainer itself (its termination message names them)
    BAD_DATA = "BadData"
    TOO_FEW_SAMPLES = "TooFewSamples"
    S3_ACCESS_DENIED = "S3AccessDenied"
    S3_NOT_FOUND = "S3NotFound"
    MODEL_LOAD_FAILED = "ModelLoadFailed"
    CUDA_OUT_OF_MEMORY = "CudaOutOfMemory"
    EXPORT_FAILED = "ExportFailed"  # an export spec.output asked for could not be written
    NON_FINITE_LOSS = "NonFiniteLoss"  # a training or eval loss was NaN or infinite
    OUTPUT_EXISTS = "OutputExists"  # the run's folder holds another run's finished results
    TRAINER_ERROR = "TrainerError"


# Failures that a retry cannot fix (the data, the credentials or the model are wrong). The
# trainer exits with PERMANENT_FAILURE_EXIT_CODE for them, and the Job's podFailurePolicy fails
# the Job at once instead of re-running preparation backoffLimit more times.
PERMANENT_REASONS: frozenset[str] = frozenset(
    {
        Reason.BAD_DATA,
        Reason.TOO_FEW_SAMPLES,
        Reason.S3_ACCESS_DENIED,
        Reason.S3_NOT_FOUND,
        Reason.MODEL_LOAD_FAILED,
        Reason.CUDA_OUT_OF_MEMORY,
        Reason.EXPORT_FAILED,
        Reason.NON_FINITE_LOSS,  # same data, seed and settings: a retry diverges the same way
        Reason.OUTPUT_EXISTS,
    }
)
PERMANENT_FAILURE_EXIT_CODE = 3
# The trainer stopped by SIGTERM after its checkpoint (128 + SIGTERM, what the kubelet reports
# for a process it stopped): a retry resumes.
EXIT_PREEMPTED = 143

# Failures the trainer diagnoses; the operator prefers them to the pod's bare exit code.
TRAINER_REASONS: frozenset[str] = PERMANENT_REASONS | {Reason.TRAINER_ERROR}

Status = Literal["True", "False", "Unknown"]


def now_rfc3339() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def set_condition(
    conditions: list[dict[str, object]],
    type_: str,
    status: Status,
    reason: str,
    message: str = "",
    observed_generation: int | None = None,
    now: str | None = None,
) -> list[dict[str, object]]:
    """Return a new condition list with `type_` set; other types are kept as they were.

    `lastTransitionTime` is kept when the status does not change (only reason or message did),
    so that "since when has this been failing" stays answerable.
    """
    stamp = now or now_rfc3339()
    old = get_condition(conditions, type_)
    flipped = old is None or old.get("status") != status
    new: dict[str, object] = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": stamp
        if flipped or old is None
        else old.get("lastTransitionTime", stamp),
    }
    if observed_generation is not None:
        new["observedGeneration"] = observed_generation
    out = [new if c.get("type") == type_ else dict(c) for c in conditions]
    return out if old is not None else [*out, new]


def get_condition(conditions: list[dict[str, object]], type_: str) -> dict[str, object] | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def true_condition(obj: Mapping[str, Any] | None, type_: str) -> dict[str, Any] | None:
    """The condition `type_` of `obj`'s status when its status is True, else None: a Job's
    Complete, Failed or Suspended, a resource's Failed. Odd shapes read as no condition."""
    status = obj.get("status") if isinstance(obj, Mapping) else None
    conditions = status.get("conditions") if isinstance(status, Mapping) else None
    for cond in conditions if isinstance(conditions, list) else []:
        if isinstance(cond, Mapping) and cond.get("type") == type_ and cond.get("status") == "True":
            return dict(cond)
    return None
