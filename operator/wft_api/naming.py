"""Deterministic names for the objects derived from a resource.

A resource may have any valid name (up to 63 characters); its children add suffixes. Where the
result would exceed Kubernetes' limit, the name is cut and a short hash of the full name keeps it
unique, so that the same resource and generation always map to the same child name (a restarted
operator finds its Job instead of creating a second one).
"""

from __future__ import annotations

import hashlib

MAX_NAME = 63
_HASH_LEN = 8


def derived_name(base: str, suffix: str, max_length: int = MAX_NAME) -> str:
    """`base-suffix`, or `base[:n]-hash-suffix` when that is too long; always a DNS-1123 label."""
    full = f"{base}-{suffix}"
    if len(full) <= max_length:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:_HASH_LEN]
    keep = max_length - len(suffix) - _HASH_LEN - 2
    if keep < 1:  # a caller's mistake, never a user's: every suffix here is short
        raise ValueError(f"the suffix {suffix!r} leaves no room within {max_length} characters")
    head = base[:keep].rstrip("-")
    return f"{head}-{digest}-{suffix}"


# An Indexed Job's pods are named for DNS `<job>-<index>`, within a DNS label's 63 characters:
# a Job of several pods leaves room for the largest index (spec.resources.nodes is at most 16).
INDEXED_JOB_MAX_NAME = MAX_NAME - len("-15")


def job_name(resource_name: str, generation: int, pods: int = 1) -> str:
    """The trainer Job of one generation: a new generation gets a new Job."""
    limit = MAX_NAME if pods <= 1 else INDEXED_JOB_MAX_NAME
    return derived_name(resource_name, f"g{generation}", limit)


def trainer_account_name(resource_name: str) -> str:
    """ServiceAccount, Role and RoleBinding shared by all generations of one resource."""
    return derived_name(resource_name, "trainer")
