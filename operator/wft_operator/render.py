"""What the operator creates for one resource, as plain dicts: pure functions, no API calls.

`wft render` prints exactly this, and the operator creates exactly this, so a user can read
what will run before applying. Per resource: a ServiceAccount (unless spec.serviceAccountName
names one), a Role that allows `get`/`patch` on that one resource's status and nothing else,
a RoleBinding, and per spec one trainer Job with its config in a ConfigMap (mounted as a file:
an environment variable holding a large spec would make the trainer's exec fail).

With `spec.resources.gpus` above 1 the pod runs one trainer process per GPU through torchrun
(`trainer_command`; docs/multi-gpu.md): the same single pod and Job, another command and a few
variables for NCCL and torchrun (`_distributed_env`). With `spec.resources.nodes` above 1 the
Job is an Indexed Job of that many pods, one per node, and a headless Service of the Job's name
gives each pod a DNS name (`<job>-<index>.<service>`): torchrun's node rank is the pod's
completion index, and the ranks meet at pod 0 (`render_service`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from wft_api import naming, uris
from wft_api.conditions import EXIT_PREEMPTED, PERMANENT_FAILURE_EXIT_CODE
from wft_api.identity import spec_hash
from wft_api.v1alpha1 import API_VERSION, GROUP, KIND, PLURAL, ResourceRef, TrainerConfig
from wft_api.v1alpha1 import WhisperFineTuneSpec as Spec

from .permissions import TRAINER_RULE_VERBS
from .settings import (
    ANY,
    DEFAULT_REFUSED_PRIORITY_CLASSES,
    DEFAULT_REFUSED_SERVICE_ACCOUNTS,
    Settings,
)

# Labels that tie every child to its resource (the operator's Job and Pod watches select on
# LABEL_NAME; LABEL_SPEC_HASH tells which run a Job runs: wft_api.identity.spec_hash, the spec
# without its run-neutral fields).
LABEL_NAME = "wft.dev/name"
LABEL_UID = "wft.dev/uid"
LABEL_GENERATION = "wft.dev/generation"
LABEL_SPEC_HASH = "wft.dev/spec-hash"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
# On a Job: the spec.suspend the operator last asked for. It changes the Job's suspend only when
# the spec's changes, never merely because the Job's differs: Kueue suspends and resumes too.
ANNOTATION_SUSPEND = "wft.dev/suspend"

CONTAINER_NAME = "trainer"
TRAINER_COMMAND = ["python", "-m", "wft_trainer"]
# torchrun with the trainer's exit codes kept (bad data must still fail the Job at once):
# wft_trainer.launch takes torchrun's arguments.
LAUNCH_COMMAND = ["python", "-m", "wft_trainer.launch"]
# Several nodes: torchrun's static rendezvous on pod 0 (its agent serves the store there).
RENDEZVOUS_PORT = 29500
# How long the first pods wait for the last: without gang scheduling, pods of one Job are
# scheduled and pull the image minutes apart (torchrun's own default is 10 minutes).
RENDEZVOUS_TIMEOUT_S = 1800
# The Job controller's variable in each pod of an Indexed Job: torchrun's node rank.
COMPLETION_INDEX_VAR = "JOB_COMPLETION_INDEX"
TRAINER_UID = 1000
CACHE_DIR = "/cache"
# The TrainerConfig, a file in the pod: a ConfigMap per Job, mounted here (WFT_CONFIG_FILE).
CONFIG_DIR = "/etc/wft"
CONFIG_KEY = "config.json"
# Long enough for the trainer to write a checkpoint to S3 after SIGTERM (preemption, suspend).
TERMINATION_GRACE_SECONDS = 300
# A placeholder for `wft render` of a resource that has not been applied yet.
PLACEHOLDER_UID = "00000000-0000-0000-0000-000000000000"


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


def service_name(job_name: str) -> str:
    """The headless Service of a Job across nodes: the Job's name, as a DNS-1035 label (a
    Service's name must start with a letter; a resource's may start with a digit)."""
    if job_name[:1].isalpha():
        return job_name
    # An Indexed Job's name is at most 60 characters (naming.INDEXED_JOB_MAX_NAME).
    prefixed = f"wft-{job_name}"
    return prefixed if len(prefixed) <= naming.MAX_NAME else f"w{job_name}"


def trainer_command(spec: Spec, job_name: str = "") -> list[str]:
    """One process on one GPU (or the CPU); with several GPUs torchrun's ranks on this node,
    one per GPU, meeting on a port of the pod's loopback (--standalone: no Service needed);
    with several nodes torchrun on each pod of the Indexed Job `job_name`, its node rank the
    pod's completion index (the kubelet expands `$(...)` from the container's environment), the
    pods meeting at pod 0 through the Job's headless Service."""
    gpus, nodes = spec.resources.gpus, spec.resources.nodes
    if nodes > 1:
        return [
            *LAUNCH_COMMAND,
            f"--nnodes={nodes}",
            f"--nproc-per-node={max(gpus, 1)}",
            f"--node-rank=$({COMPLETION_INDEX_VAR})",
            f"--master-addr={job_name}-0.{service_name(job_name)}",
            f"--master-port={RENDEZVOUS_PORT}",
            f"--rdzv-conf=timeout={RENDEZVOUS_TIMEOUT_S}",
            "--module",
            "wft_trainer",
        ]
    if gpus <= 1:
        return list(TRAINER_COMMAND)
    return [
        *LAUNCH_COMMAND,
        "--standalone",
        "--nnodes=1",
        f"--nproc-per-node={gpus}",
        "--module",
        "wft_trainer",
    ]


def render_service(ref: ResourceRef, spec: Spec, job_name: str) -> dict[str, Any] | None:
    """The headless Service that gives the pods of a Job across nodes their DNS names; None on
    one node. Owned by the resource like the Job, deleted with it (and with the Job on a new
    run). publishNotReadyAddresses: the pods have no readiness probe and must find pod 0 while
    they start."""
    if spec.resources.nodes <= 1:
        return None
    extra = {LABEL_GENERATION: str(ref.generation)}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(service_name(job_name), ref, extra),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            # The Job's pods, as the operator's own Pod lookup selects them.
            "selector": {LABEL_NAME: ref.name, LABEL_GENERATION: str(ref.generation)},
            "ports": [{"name": "rendezvous", "port": RENDEZVOUS_PORT, "protocol": "TCP"}],
        },
    }


def _distributed_env() -> list[dict[str, Any]]:
    return [
        # NVLink multicast (NVLS, NVLink SHARP) off, in NCCL, PyTorch's symmetric memory and
        # NVSHMEM: on hosts whose GPUs are shared, programs using it have put every GPU of the
        # host out of service for a day or more, and an all-reduce of a LoRA's few megabytes
        # per step gains nothing from it.
        {"name": "NCCL_NVLS_ENABLE", "value": "0"},
        {"name": "TORCH_SYMM_MEM_DISABLE_MULTICAST", "value": "1"},
        {"name": "NVSHMEM_DISABLE_NVLS", "value": "1"},
        # On SIGTERM torchrun gives its ranks this long to checkpoint before it kills them
        # (30 s by default): most of the pod's grace period, which the kubelet enforces.
        {"name": "TORCH_ELASTIC_SHUTDOWN_TIMEOUT", "value": str(TERMINATION_GRACE_SECONDS - 30)},
    ]


def _distributed(spec: Spec) -> bool:
    return spec.resources.gpus > 1 or spec.resources.nodes > 1


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
    if _distributed(spec):
        env += _distributed_env()
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
    meta = _metadata(naming.job_name(ref.name, generation, spec.resources.nodes), ref, extra)
    meta["annotations"] = {ANNOTATION_SUSPEND: "true" if spec.suspend else "false"}
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
                "command": trainer_command(spec, meta["name"]),
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
    rules: list[dict[str, Any]] = [
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
    job_spec: dict[str, Any] = {
        "suspend": spec.suspend,
        "backoffLimit": spec.backoff_limit,
        "podFailurePolicy": {"rules": rules},
        "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
    }
    nodes = spec.resources.nodes
    if nodes > 1:
        # One pod per node, pod i torchrun's node i. The ranks stop and start together: a
        # preempted pod's SIGTERM reaches every rank at the next all-reduce, all checkpoint and
        # exit 143 (the peers of a preempted pod have no DisruptionTarget, hence the rule); a
        # pod that fails takes its peers down at their next collective. Each failure of a run
        # so fails up to `nodes` pods: backoffLimit counts runs, as on one node. The Job
        # controller replaces each failed pod (same index, same DNS name), the new pods meet
        # at pod 0 again and every rank resumes from the last checkpoint in S3.
        rules.insert(
            1,
            {
                "action": "Ignore",
                "onExitCodes": {
                    "containerName": CONTAINER_NAME,
                    "operator": "In",
                    "values": [EXIT_PREEMPTED],
                },
            },
        )
        job_spec.update(
            completionMode="Indexed",
            completions=nodes,
            parallelism=nodes,
            backoffLimit=spec.backoff_limit * nodes,
        )
        pod_spec["subdomain"] = service_name(meta["name"])
    deadline = spec.active_deadline_seconds or settings.default_active_deadline_seconds
    if deadline:
        job_spec["activeDeadlineSeconds"] = deadline
    if spec.ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = spec.ttl_seconds_after_finished
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": job_spec}


def guard_rail_problems(spec: Spec, settings: Settings) -> list[str]:
    """Platform limits beyond the API's own rules (docs/guard-rails.md): each problem names
    the field, the value, the rule (the operator setting that decides it) and what to do.

    Creating a WhisperFineTune creates a pod: without these, whoever may create one could run
    any image as any ServiceAccount of the namespace, on any node, and point the trainer's
    signed S3 requests at the node's metadata service.
    """
    problems = []
    gpus, nodes = spec.resources.gpus, spec.resources.nodes
    if settings.max_gpus is not None and gpus * nodes > settings.max_gpus:
        # The cap is on the run's GPUs, whatever the pods they are spread over.
        asked = (
            f"{gpus}" if nodes == 1 else f"{gpus} on each of {nodes} nodes, {gpus * nodes} in all"
        )
        problems.append(
            f"spec.resources.gpus: {asked}: more than this operator allows "
            f"(WFT_MAX_GPUS={settings.max_gpus}); ask for at most {settings.max_gpus}"
            + ("" if nodes == 1 else " (resources.gpus x resources.nodes)")
        )
    if spec.image is not None and not image_allowed(spec.image, settings):
        allowed = (
            ", ".join(settings.allowed_image_prefixes)
            if settings.allowed_image_prefixes
            else f"{image_repository(settings.trainer_image)} (the operator's trainer image)"
        )
        problems.append(
            f"spec.image: {spec.image!r}: not an image this operator runs "
            f"(WFT_ALLOWED_IMAGE_PREFIXES allows: {allowed}); leave spec.image out to use "
            f"{settings.trainer_image}, or ask the platform team to allow the image"
        )
    endpoint = spec.storage.endpoint
    if endpoint is not None:
        problems += _endpoint_problems(endpoint, settings)
    account = spec.service_account_name
    if account is not None and not _listed(
        account, settings.allowed_service_accounts, DEFAULT_REFUSED_SERVICE_ACCOUNTS
    ):
        if account in DEFAULT_REFUSED_SERVICE_ACCOUNTS and not settings.allowed_service_accounts:
            why = (
                "the namespace's default ServiceAccount is refused (every pod in the namespace "
                "runs as it, and the trainer's Role would let all of them write this "
                "resource's status)"
            )
        else:
            why = f"not listed in WFT_ALLOWED_SERVICE_ACCOUNTS ({_names(settings.allowed_service_accounts)})"
        problems.append(
            f"spec.serviceAccountName: {account!r}: {why}; name a ServiceAccount of its own "
            "or leave the field out (the operator creates one per resource), or ask the "
            "platform team (WFT_ALLOWED_SERVICE_ACCOUNTS)"
        )
    priority = spec.resources.priority_class_name
    if priority is not None and not _listed(
        priority, settings.allowed_priority_classes, DEFAULT_REFUSED_PRIORITY_CLASSES
    ):
        rule = (
            f"{priority} is for the cluster's own components and refused"
            if not settings.allowed_priority_classes
            else f"not listed in WFT_ALLOWED_PRIORITY_CLASSES "
            f"({_names(settings.allowed_priority_classes)})"
        )
        problems.append(
            f"spec.resources.priorityClassName: {priority!r}: {rule} "
            "(WFT_ALLOWED_PRIORITY_CLASSES); use a PriorityClass for workloads, or leave it out"
        )
    if not settings.allow_tolerate_all_taints:
        for i, toleration in enumerate(spec.resources.tolerations):
            if toleration.operator == "Exists" and not toleration.key:
                problems.append(
                    f"spec.resources.tolerations[{i}]: operator Exists without a key tolerates "
                    "every taint (control-plane and dedicated nodes too); refused unless the "
                    "platform allows it (WFT_ALLOW_TOLERATE_ALL_TAINTS); name the taint's key, "
                    "e.g. nvidia.com/gpu"
                )
    return problems


def image_repository(image: str) -> str:
    """`reg:5000/team/trainer:1.2@sha256:..` -> `reg:5000/team/trainer`."""
    name = image.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]


def _prefix_of(image: str, prefix: str) -> bool:
    """A prefix that ends at a boundary of the image reference ('/', ':' or '@')."""
    if image == prefix:
        return True
    if not prefix or not image.startswith(prefix):
        return False
    return prefix[-1] in "/:@" or image[len(prefix)] in "/:@"


def image_allowed(image: str, settings: Settings) -> bool:
    allowed = settings.allowed_image_prefixes
    if ANY in allowed:
        return True
    if not allowed:  # the trainer image's repository, any tag or digest
        return image == settings.trainer_image or image_repository(image) == image_repository(
            settings.trainer_image
        )
    return any(_prefix_of(image, prefix) for prefix in allowed)


def _endpoint_key(url: str) -> tuple[str, str, int | None, str]:
    parts = urlsplit(url)
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        port = None
    return parts.scheme, (parts.hostname or "").rstrip("."), port, parts.path.rstrip("/")


def endpoint_listed(url: str, allowed: list[str]) -> bool:
    scheme, host, port, path = _endpoint_key(url)
    for entry in allowed:
        e_scheme, e_host, e_port, e_path = _endpoint_key(entry)
        if (scheme, host, port) == (e_scheme, e_host, e_port) and (
            path == e_path or path.startswith(e_path + "/")
        ):
            return True
    return False


def _endpoint_problems(endpoint: str, settings: Settings) -> list[str]:
    shown = uris.redact(endpoint)
    allowed = settings.allowed_storage_endpoints
    listed = ANY not in allowed and endpoint_listed(endpoint, allowed)
    if allowed and ANY not in allowed and not listed:
        return [
            f"spec.storage.endpoint: {shown!r}: not an S3 endpoint this platform allows "
            f"(WFT_ALLOWED_STORAGE_ENDPOINTS: {', '.join(allowed)}); use one of those, or "
            "leave the field out for AWS"
        ]
    host = uris.endpoint_host(endpoint)
    if uris.is_metadata_host(host) and not settings.allow_link_local_endpoints and not listed:
        return [
            f"spec.storage.endpoint: {shown!r}: a link-local or cloud metadata address; the "
            "trainer would send its signed S3 requests to the node's metadata service; "
            "refused unless the platform allows it (WFT_ALLOW_LINK_LOCAL_ENDPOINTS, or the "
            "endpoint listed in WFT_ALLOWED_STORAGE_ENDPOINTS)"
        ]
    return []


def _listed(name: str, allowed: list[str], refused_by_default: frozenset[str]) -> bool:
    if ANY in allowed:
        return True
    return name in allowed if allowed else name not in refused_by_default


def _names(names: list[str]) -> str:
    return ", ".join(names) if names else "none"


def render_all(ref: ResourceRef, spec: Spec, settings: Settings) -> list[dict[str, Any]]:
    """ServiceAccount (when created), Role, RoleBinding, the Job's ConfigMap, its headless
    Service (several nodes) and the Job, in the order they are created."""
    sa = render_service_account(ref, spec)
    children = [sa] if sa else []
    job = render_job(ref, spec, settings)
    service = render_service(ref, spec, job["metadata"]["name"])
    return [
        *children,
        render_role(ref),
        render_role_binding(ref, spec),
        render_config_map(ref, spec, job["metadata"]["name"]),
        *([service] if service else []),
        job,
    ]
