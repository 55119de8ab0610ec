"""The operator's settings: read from the environment once, at start-up.

The Helm chart sets exactly these variables (`charts/`); keep the names stable. Everything a
platform team decides for all resources (trainer image, default size and placement of the
trainer pod, guard-rails) lives here; everything a speech team decides is in the resource.

The guard-rails (enforced in `render.guard_rail_problems`, docs/guard-rails.md) default to what
is safe on a cluster shared by teams who may create WhisperFineTunes but not pods: only the
configured trainer image, no link-local or metadata endpoint, not the namespace's `default`
ServiceAccount, no system-* PriorityClass, no toleration of every taint, at most 8 GPUs. A list
setting is comma-separated; `*` allows anything.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from wft_api import uris
from wft_api.v1alpha1 import QUANTITY_PATTERN

DEFAULT_TRAINER_IMAGE = "ghcr.io/whisper-finetune/trainer:0.1.0"

# Settings field -> environment variable. The one place that names them.
ENV_NAMES: dict[str, str] = {
    "namespaces": "WFT_NAMESPACES",
    "trainer_image": "WFT_TRAINER_IMAGE",
    "trainer_image_pull_policy": "WFT_TRAINER_IMAGE_PULL_POLICY",
    "default_cpu": "WFT_DEFAULT_CPU",
    "default_memory": "WFT_DEFAULT_MEMORY",
    "default_node_selector": "WFT_DEFAULT_NODE_SELECTOR",
    "default_tolerations": "WFT_DEFAULT_TOLERATIONS",
    "default_priority_class": "WFT_DEFAULT_PRIORITY_CLASS",
    "default_active_deadline_seconds": "WFT_DEFAULT_ACTIVE_DEADLINE_SECONDS",
    "trainer_env": "WFT_TRAINER_ENV",
    "max_gpus": "WFT_MAX_GPUS",
    "allowed_image_prefixes": "WFT_ALLOWED_IMAGE_PREFIXES",
    "allowed_storage_endpoints": "WFT_ALLOWED_STORAGE_ENDPOINTS",
    "allow_link_local_endpoints": "WFT_ALLOW_LINK_LOCAL_ENDPOINTS",
    "allowed_service_accounts": "WFT_ALLOWED_SERVICE_ACCOUNTS",
    "allowed_priority_classes": "WFT_ALLOWED_PRIORITY_CLASSES",
    "allow_tolerate_all_taints": "WFT_ALLOW_TOLERATE_ALL_TAINTS",
    "health_port": "WFT_HEALTH_PORT",
    "metrics_port": "WFT_METRICS_PORT",
    "bind_address": "WFT_BIND_ADDRESS",
}
_JSON_FIELDS = {"default_node_selector", "default_tolerations", "trainer_env"}
# What the operator itself sets in a trainer pod (render.py): trainer_env may not replace them.
RESERVED_TRAINER_ENV = frozenset(
    {
        "WFT_CONFIG",
        "WFT_CONFIG_FILE",
        "WFT_POD_NAME",
        "WFT_CACHE_DIR",
        "HF_HOME",
        "HF_HUB_OFFLINE",
        "HF_TOKEN",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        # Several GPUs (render._distributed_env).
        "NCCL_NVLS_ENABLE",
        "TORCH_SYMM_MEM_DISABLE_MULTICAST",
        "NVSHMEM_DISABLE_NVLS",
        "TORCH_ELASTIC_SHUTDOWN_TIMEOUT",
        # Several nodes: the Job controller's, each pod's node rank (set here, every pod's the
        # same). torchrun's own variables (RANK, WORLD_SIZE, ...) it sets itself.
        "JOB_COMPLETION_INDEX",
    }
)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Comma-separated in the environment.
_LIST_FIELDS = (
    "namespaces",
    "allowed_image_prefixes",
    "allowed_storage_endpoints",
    "allowed_service_accounts",
    "allowed_priority_classes",
)
ANY = "*"
# What a trainer pod may not ask for unless the platform lists it.
DEFAULT_REFUSED_SERVICE_ACCOUNTS = frozenset({"default"})
DEFAULT_REFUSED_PRIORITY_CLASSES = frozenset({"system-node-critical", "system-cluster-critical"})
DEFAULT_MAX_GPUS = 8


class SettingsError(ValueError):
    """A setting that cannot be used; the message names the environment variable."""


class Settings(BaseModel):
    """Operator-wide defaults and limits (see ENV_NAMES for the variable of each field)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    namespaces: list[str] = Field(
        default_factory=list, description="Namespaces to serve; empty means all namespaces."
    )
    trainer_image: str = Field(DEFAULT_TRAINER_IMAGE, min_length=1, pattern=r"^\S+$")
    trainer_image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    default_cpu: str = Field("8", pattern=QUANTITY_PATTERN)
    default_memory: str = Field("64Gi", pattern=QUANTITY_PATTERN)
    default_node_selector: dict[str, str] = Field(default_factory=dict)
    default_tolerations: list[dict[str, Any]] = Field(default_factory=list)
    default_priority_class: str | None = None
    default_active_deadline_seconds: int | None = Field(None, ge=1)
    trainer_env: dict[str, str] = Field(
        default_factory=dict,
        description="Environment of every trainer pod (proxies, allocator or NCCL settings, "
        "WFT_COMPILE_ENCODER=0).",
    )
    max_gpus: int | None = Field(
        DEFAULT_MAX_GPUS, ge=0, le=64, description="Refuse resources asking more GPUs."
    )
    allowed_image_prefixes: list[str] = Field(
        default_factory=list,
        description="Images spec.image may name, by prefix (a prefix ends at '/', ':' or '@' "
        "of the image: 'registry.example/team' allows 'registry.example/team/x:1', not "
        "'registry.example/team-evil/x'). Empty: only the trainer image's repository (any tag "
        "or digest). '*': any image.",
    )
    allowed_storage_endpoints: list[str] = Field(
        default_factory=list,
        description="S3 endpoints spec.storage.endpoint may name (URLs: scheme, host and port "
        "equal, path a prefix). Empty: any http(s) endpoint except link-local and metadata "
        "addresses. A resource without an endpoint (AWS) is always allowed.",
    )
    allow_link_local_endpoints: bool = Field(
        False,
        description="Allow endpoints on link-local addresses (169.254.0.0/16, fe80::/10) and "
        "cloud metadata services (169.254.169.254, fd00:ec2::254, metadata.google.internal).",
    )
    allowed_service_accounts: list[str] = Field(
        default_factory=list,
        description="ServiceAccounts spec.serviceAccountName may name. Empty: any but "
        "'default' (every pod of the namespace runs as it, and the trainer's Role lets its "
        "account write this resource's status). '*': any.",
    )
    allowed_priority_classes: list[str] = Field(
        default_factory=list,
        description="PriorityClasses spec.resources.priorityClassName may name. Empty: any but "
        "system-node-critical and system-cluster-critical. '*': any.",
    )
    allow_tolerate_all_taints: bool = Field(
        False,
        description="Allow a toleration with operator Exists and no key (it tolerates every "
        "taint: control-plane and dedicated nodes included).",
    )
    health_port: int = Field(8080, ge=0, le=65535, description="/healthz; 0 disables it.")
    metrics_port: int = Field(9090, ge=0, le=65535, description="/metrics; 0 disables it.")
    bind_address: str = Field(
        "0.0.0.0",
        pattern=r"^[0-9a-fA-F.:]+$",
        description="Address /healthz and /metrics listen on: every interface in a pod (the "
        "kubelet's probes and Prometheus come from outside it); 127.0.0.1 on a laptop.",
    )

    @field_validator(*_LIST_FIELDS, mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [n.strip() for n in v.split(",") if n.strip()]
        return v

    @field_validator("allowed_storage_endpoints")
    @classmethod
    def _endpoints(cls, v: list[str]) -> list[str]:
        for url in v:
            problem = None if url == ANY else uris.endpoint_problem(url)
            if problem:
                raise ValueError(f"{uris.redact(url)!r} {problem}")
        return v

    @field_validator("trainer_env")
    @classmethod
    def _env_names(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if not _ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not an environment variable name")
            if name in RESERVED_TRAINER_ENV:
                raise ValueError(
                    f"{name} is set by the operator itself (from the resource's spec); "
                    f"reserved: {', '.join(sorted(RESERVED_TRAINER_ENV))}"
                )
        return v

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from WFT_* variables; unset or empty variables keep their defaults."""
        env = os.environ if environ is None else environ
        raw: dict[str, Any] = {}
        for field, var in ENV_NAMES.items():
            value = env.get(var, "").strip()
            if not value:
                continue
            if field in _JSON_FIELDS:
                try:
                    raw[field] = json.loads(value)
                except json.JSONDecodeError as err:
                    raise SettingsError(f"{var}: not valid JSON ({err.msg})") from None
            else:
                raw[field] = value
        try:
            return cls.model_validate(raw)
        except ValidationError as err:
            first = err.errors()[0]
            field = str(first["loc"][0]) if first["loc"] else ""
            var = ENV_NAMES.get(field, field)
            value = uris.redact(env.get(var, ""))
            raise SettingsError(f"{var}={value!r}: {first['msg']}") from None
