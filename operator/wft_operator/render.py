"""What the operator creates for one resource, as plain dicts: pure functions, no API calls.

`wft render` prints exactly this, and the operator creates exactly this, so a user can read
what will run before applying. Per resource: a ServiceAccount (unless spec.serviceAccountName
names one), a Role that allows `get`/`patch` on that one resource's status and nothing else,
a RoleBinding, and per spec one trainer Job with its config in a ConfigMap (mounted as a file:
an environment variable holding a large spec would make the trainer's exec fail).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from wft_api import naming
from wft_api.conditions import PERMANENT_FAILURE_EXIT_CODE
from wft_api.v1alpha1 import API_VERSION, GROUP, KIND, PLURAL, ResourceRef, TrainerConfig
from wft_api.v1alpha1 import WhisperFineTuneSpec as Spec

from .permissions import TRAINER_RULE_VERBS
from .settings import Settings

# Labels that tie every child to its resource (the operator's Job and Pod watches select on
# LABEL_NAME; LABEL_SPEC_HASH tells which spec a Job runs, see spec_hash).
LABEL_NAME = "wft.dev/name"
LABEL_UID = "wft.dev/uid"
LABEL_GENERATION = "wft.dev/generation"
LABEL_SPEC_HASH = "wft.dev/spec-hash"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"

CONTAINER_NAME = "trainer"
TRAINER_COMMAND = ["python", "-m", "wft_trainer"]
TRAINER_UID = 1000
CACHE_DIR = "/cache"
# The TrainerConfig, a file in the pod: a ConfigMap per Job, mounted here (WFT_CONFIG_FILE).
CONFIG_DIR = "/etc/wft"
CONFIG_KEY = "config.json"
# Long enough for the trainer to write a checkpoint to S3 after SIGTERM (preemption, suspend).
TERMINATION_GRACE_SECONDS = 300
# A placeholder for `wft render` of a resource that has not been applied yet.
PLACEHOLDER_UID = "00000000-0000-0000-0000-000000000000"
# Fields of the spec that do not change what a run computes: toggling them keeps the Job.
_RUN_NEUTRAL_FIELDS = ("suspend",)


def spec_hash(spec: Spec) -> str:
    """A short digest of the spec minus `suspend`: equal digests mean the same training run.

    Suspending bumps metadata.generation like any spec edit, but must pause the running Job
    rather than replace it; the Job carries this digest so a restarted operator can tell.
    """
    data = spec.to_dict()
    for key in _RUN_NEUTRAL_FIELDS:
        data.pop(key, None)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def labels(ref: ResourceRef) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "whisper-finetune",
        "app.kubernetes.io/instance": ref.name,
        "app.kubernetes.io/component": "trainer",
        "app.kubernetes.io/managed-by": "wft-operator",
        LABEL_NAME: ref.name,
        LABEL_UID: ref.uid or PLACEHOLDER_UID,
    }


def owner_reference(ref: ResourceRef) -> dict[str, Any]:
    """Children are garbage-collected with the resource: no finalizer is needed."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": ref.name,
        "uid": ref.uid or PLACEHOLDER_UID,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(name: str, ref: ResourceRef, extra: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": ref.namespace,
        "labels": {**labels(ref), **(extra or {})},
        "ownerReferences": [owner_reference(ref)],
    }


def trainer_account(ref: ResourceRef, spec: Spec) -> str:
    """The ServiceAccount the trainer pod runs as."""
    return spec.service_account_name or naming.trainer_account_name(ref.name)


def render_service_account(ref: ResourceRef, spec: Spec) -> dict[str, Any] | None:
    """None when the spec names its own ServiceAccount (workload identity)."""
    if spec.service_account_name:
        return None
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(naming.trainer_account_name(ref.name), ref),
    }


def render_role(ref: ResourceRef) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _metadata(naming.trainer_account_name(ref.name), ref),
        "rules": [
            {
                "apiGroups": [GROUP],
                "resources": [f"{PLURAL}/status"],
                "resourceNames": [ref.name],
                "verbs": list(TRAINER_RULE_VERBS),
            }
        ],
    }


def render_role_binding(ref: ResourceRef, spec: Spec) -> dict[str, Any]:
    name = naming.trainer_account_name(ref.name)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _metadata(name, ref),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [
            {
                "kind": "ServiceAccount",
                "name": trainer_account(ref, spec),
                "namespace": ref.namespace,
            }
        ],
    }


def _secret_env(name: str, secret: str, key: str, optional: bool = False) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": secret, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


def config_map_name(job_name: str) -> str:
    """The ConfigMap that holds the config of the Job `job_name`: the Job's own name (within
    63 characters like every child's)."""
    return job_name


def render_config_map(ref: ResourceRef, spec: Spec, job_name: str) -> dict[str, Any]:
    """The trainer's config for the Job `job_name`, owned by the resource like the Job.

    Immutable: the config of a run never changes (a new spec is a new Job, with its own), so
    a pod restarted after a suspend reads what its run started with.
    """
    config = TrainerConfig(resource=ref, spec=spec)
    extra = {LABEL_GENERATION: str(ref.generation)}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(config_map_name(job_name), ref, extra),
        "immutable": True,
        "data": {CONFIG_KEY: config.model_dump_json(by_alias=True, exclude_none=True)},
    }


def _env(ref: ResourceRef, spec: Spec, settings: Settings) -> list[dict[str, Any]]:
    # The platform's variables first; the operator's own names are refused there (settings.py).
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in settings.trainer_env.items()]
    env += [
        {"name": "WFT_CONFIG_FILE", "value": f"{CONFIG_DIR}/{CONFIG_KEY}"},
        {"name": "WFT_CACHE_DIR", "value": CACHE_DIR},
        # The trainer names the attempt its report is about (status.trainer.pod).
        {"name": "WFT_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "HF_HOME", "value": f"{CACHE_DIR}/hf"},
    ]
    if spec.base_model.startswith("s3://"):
        # An air-gapped model: never reach out to the hub, fail fast instead.
        env.append({"name": "HF_HUB_OFFLINE", "value": "1"})
    secret = spec.storage.credentials_secret
    if secret:
        env += [
            _secret_env("AWS_ACCESS_KEY_ID", secret, "AWS_ACCESS_KEY_ID"),
            _secret_env("AWS_SECRET_ACCESS_KEY", secret, "AWS_SECRET_ACCESS_KEY"),
            _secret_env("AWS_SESSION_TOKEN", secret, "AWS_SESSION_TOKEN", optional=True),
        ]
    if spec.hf_token_secret:
        env.append(_secret_env("HF_TOKEN", spec.hf_token_secret, "HF_TOKEN"))
    return env


def _resources(spec: Spec, settings: Settings) -> dict[str, Any]:
    amounts: dict[str, str] = {
        "cpu": str(spec.resources.cpu or settings.default_cpu),
        "memory": str(spec.resources.memory or settings.default_memory),
    }
    if spec.resources.gpus > 0:
        amounts["nvidia.com/gpu"] = str(spec.resources.gpus)
    # Requests equal limits: the pod is Guaranteed, so it is the last to be evicted.
    return {"requests": dict(amounts), "limits": dict(amounts)}


def render_job(ref: ResourceRef, spec: Spec, settings: Settings) -> dict[str, Any]:
    """The trainer Job of `ref.generation`."""
    generation = ref.generation
    extra = {LABEL_GENERATION: str(generation), LABEL_SPEC_HASH: spec_hash(spec)}
    meta = _metadata(naming.job_name(ref.name, generation), ref, extra)
    if spec.queue_name:
        meta["labels"][KUEUE_QUEUE_LABEL] = spec.queue_name
    pod_labels = {**labels(ref), **extra}
    tolerations = [t.to_dict() for t in spec.resources.tolerations] or [
        dict(t) for t in settings.default_tolerations
    ]
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": trainer_account(ref, spec),
        # The trainer patches its own resource's status with this account's token.
        "automountServiceAccountToken": True,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": TRAINER_UID,
            "runAsGroup": TRAINER_UID,
            "fsGroup": TRAINER_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": CONTAINER_NAME,
                "image": spec.image or settings.trainer_image,
                "imagePullPolicy": settings.trainer_image_pull_policy,
                "command": list(TRAINER_COMMAND),
                "env": _env(ref, spec, settings),
                "resources": _resources(spec, settings),
                "volumeMounts": [
                    {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                    {"name": "cache", "mountPath": CACHE_DIR},
                    {"name": "dshm", "mountPath": "/dev/shm"},
                    # The root filesystem is read-only; Python and torch still want a /tmp.
                    {"name": "tmp", "mountPath": "/tmp"},
                ],
                # The trainer writes {"reason", "message"} JSON here when it fails; the
                # operator reads it from the pod status. Logs are the fallback for crashes.
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "privileged": False,
                    "readOnlyRootFilesystem": True,
                    "runAsNonRoot": True,
                    "capabilities": {"drop": ["ALL"]},
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
            }
        ],
        "volumes": [
            {"name": "config", "configMap": {"name": config_map_name(meta["name"])}},
            {"name": "cache", "emptyDir": {}},
            # Torch data-loader workers share tensors through /dev/shm (64Mi by default).
            {"name": "dshm", "emptyDir": {"medium": "Memory"}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    node_selector = spec.resources.node_selector or settings.default_node_selector
    if node_selector:
        pod_spec["nodeSelector"] = dict(node_selector)
    if tolerations:
        pod_spec["tolerations"] = tolerations
    priority = spec.resources.priority_class_name or settings.default_priority_class
    if priority:
        pod_spec["priorityClassName"] = priority
    job_spec: dict[str, Any] = {
        "suspend": spec.suspend,
        "backoffLimit": spec.backoff_limit,
        "podFailurePolicy": {
            "rules": [
                # Bad data or credentials: retrying would only re-run preparation and fail again.
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": CONTAINER_NAME,
                        "operator": "In",
                        "values": [PERMANENT_FAILURE_EXIT_CODE],
                    },
                },
                # Preemption and node drains do not count against backoffLimit; the retry
                # resumes from the last checkpoint.
                {
                    "action": "Ignore",
                    "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                },
            ]
        },
        "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
    }
    deadline = spec.active_deadline_seconds or settings.default_active_deadline_seconds
    if deadline:
        job_spec["activeDeadlineSeconds"] = deadline
    if spec.ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = spec.ttl_seconds_after_finished
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": job_spec}


def guard_rail_problems(spec: Spec, settings: Settings) -> list[str]:
    """Platform limits beyond the API's own rules; each problem names the field and limit."""
    problems = []
    if settings.max_gpus is not None and spec.resources.gpus > settings.max_gpus:
        problems.append(
            f"spec.resources.gpus: {spec.resources.gpus}: more than this operator allows "
            f"(WFT_MAX_GPUS={settings.max_gpus}); ask for at most {settings.max_gpus}"
        )
    return problems


def render_all(ref: ResourceRef, spec: Spec, settings: Settings) -> list[dict[str, Any]]:
    """ServiceAccount (when created), Role, RoleBinding, the Job's ConfigMap and the Job, in
    the order they are created."""
    sa = render_service_account(ref, spec)
    children = [sa] if sa else []
    job = render_job(ref, spec, settings)
    return [
        *children,
        render_role(ref),
        render_role_binding(ref, spec),
        render_config_map(ref, spec, job["metadata"]["name"]),
        job,
    ]
