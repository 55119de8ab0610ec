"""Every Kubernetes permission the operator needs, in one place.

The Helm chart's ClusterRole / Roles are rendered from the same list (a test compares the two),
so adding an API call here is the only change needed to grant it.
"""

from __future__ import annotations

from typing import Any

from wft_api import GROUP, PLURAL

OPERATOR_RULES: list[dict[str, Any]] = [
    # The resources it reconciles, and their status subresource.
    {
        "apiGroups": [GROUP],
        "resources": [PLURAL],
        "verbs": ["get", "list", "watch", "patch"],
    },
    {"apiGroups": [GROUP], "resources": [f"{PLURAL}/status"], "verbs": ["get", "patch", "update"]},
    # The trainer Jobs it owns (suspend/resume is a patch; a spec change deletes the old Job).
    {
        "apiGroups": ["batch"],
        "resources": ["jobs"],
        "verbs": ["get", "list", "watch", "create", "patch", "delete"],
    },
    # The trainer's config of each Job, a file in its pod (deleted with the Job it configured).
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create", "delete"]},
    # The headless Service of a Job across nodes (its pods' DNS names for torchrun's rendezvous),
    # created and deleted with the Job.
    {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "create", "delete"]},
    # Pods of those Jobs, read to explain failures (OOMKilled, image pull, unschedulable).
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    # The per-resource identity of each trainer: it may patch only its own resource's status.
    {
        "apiGroups": [""],
        "resources": ["serviceaccounts"],
        "verbs": ["get", "list", "watch", "create", "patch"],
    },
    {
        "apiGroups": ["rbac.authorization.k8s.io"],
        "resources": ["roles", "rolebindings"],
        "verbs": ["get", "list", "watch", "create", "patch"],
    },
    # Events on the resource for each transition (both APIs: Kopf posts core/v1 Events).
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    # Kopf discovers CRDs and namespaces at start-up.
    {
        "apiGroups": ["apiextensions.k8s.io"],
        "resources": ["customresourcedefinitions"],
        "verbs": ["get", "list", "watch"],
    },
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
]

# What the per-resource trainer Role grants, restricted by resourceNames to its own resource.
# An operator can only grant what it holds itself, hence get/patch on the status above.
TRAINER_RULE_VERBS: list[str] = ["get", "patch"]
