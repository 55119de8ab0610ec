"""The operator's two reconcile flows, as short lists of steps over `Kube` and pure functions.

`ensure_run`: on create, resume and spec change. Validate; create the trainer's RBAC, the
Job of the current spec and its ConfigMap exactly as `wft render` shows (AlreadyExists is
success); delete Jobs of earlier specs (and their ConfigMaps); pause or resume the Job for
`spec.suspend`; write status.

`sync_status`: on any event of a Job or Pod of a resource: status from `status.observe`.

The current Job is the one named for the resource's generation, or else the one whose spec
digest (`render.spec_hash`) matches: `spec.suspend` bumps the generation too, yet must pause
the Job rather than replace it, and a restarted operator must recognise the Job it made.
No Kopf here: `handlers.py` maps the exceptions to Kopf's and posts the Events.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from wft_api.conditions import now_rfc3339
from wft_api.v1alpha1 import API_VERSION, KIND, TERMINAL_PHASES, ResourceRef, WhisperFineTuneSpec
from wft_api.validation import validate_object

from . import metrics
from .kube import AlreadyExists, ApiError, Kube, Obj, Transient
from .render import (
    LABEL_GENERATION,
    LABEL_NAME,
    LABEL_SPEC_HASH,
    config_map_name,
    guard_rail_problems,
    render_config_map,
    render_job,
    render_role,
    render_role_binding,
    render_service_account,
    spec_hash,
)
from .settings import Settings
from .status import Change, Event, observe_change, spec_invalid

LOG = logging.getLogger("wft_operator")

_STATUS_WRITE_ATTEMPTS = 5


class InvalidSpec(Exception):
    """The spec will never work as it is; the message names the field(s)."""


@dataclass
class Context:
    kube: Kube
    settings: Settings
    post_event: Callable[[Obj, Event], None]
    phases: metrics.PhaseCounts


def problems_of(body: Obj, settings: Settings) -> tuple[WhisperFineTuneSpec | None, list[str]]:
    """The parsed spec, or what is wrong with it (shared model, then platform guard-rails)."""
    meta = body.get("metadata") or {}
    doc = {
        "apiVersion": body.get("apiVersion", API_VERSION),
        "kind": body.get("kind", KIND),
        "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace")},
        "spec": body.get("spec"),
    }
    found, resource = validate_object(doc)
    problems = [str(p) for p in found]
    if resource is None:
        return None, problems or ["spec: not a valid WhisperFineTune spec"]
    problems += guard_rail_problems(resource.spec, settings)
    return (None if problems else resource.spec), problems


def _ref(body: Obj) -> ResourceRef:
    meta = body["metadata"]
    return ResourceRef(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta.get("uid"),
        generation=int(meta.get("generation") or 1),
    )


def owned_jobs(kube: Kube, ref: ResourceRef) -> list[Obj]:
    """Jobs of this resource (by label), owned by this incarnation of it (by uid)."""
    jobs = kube.list("Job", ref.namespace, {LABEL_NAME: ref.name})
    return [
        j
        for j in jobs
        if any(o.get("uid") == ref.uid for o in j["metadata"].get("ownerReferences") or [])
    ]


def current_job(jobs: list[Obj], generation: int, digest: str) -> Obj | None:
    """The live Job that runs this spec: the one made for this generation, or an earlier one
    whose spec differed only in `suspend` (same digest)."""
    live = [j for j in jobs if not j["metadata"].get("deletionTimestamp")]
    exact = [j for j in live if _job_generation(j) == generation]
    if exact:
        # Also covers an operator upgrade whose model adds defaulted fields: the digest may
        # differ, but the generation says the user changed nothing. No run is restarted.
        return exact[0]
    same = [j for j in live if j["metadata"].get("labels", {}).get(LABEL_SPEC_HASH) == digest]
    return max(same, key=_job_generation, default=None)


def _job_generation(job: Obj) -> int:
    return int(job["metadata"].get("labels", {}).get(LABEL_GENERATION) or 0)


def _pods(kube: Kube, job: Obj) -> list[Obj]:
    labels = job["metadata"]["labels"]
    selector = {LABEL_NAME: labels[LABEL_NAME], LABEL_GENERATION: labels[LABEL_GENERATION]}
    return kube.list("Pod", job["metadata"]["namespace"], selector)


def ensure_rbac(kube: Kube, ref: ResourceRef, spec: WhisperFineTuneSpec) -> None:
    """ServiceAccount, Role and RoleBinding; an existing binding follows serviceAccountName."""
    sa = render_service_account(ref, spec)
    for obj in [sa] if sa else []:
        _create(kube, obj)
    _create(kube, render_role(ref))
    binding = render_role_binding(ref, spec)
    if not _create(kube, binding):
        meta = binding["metadata"]
        kube.patch(
            "RoleBinding", meta["namespace"], meta["name"], {"subjects": binding["subjects"]}
        )


def ensure_config(kube: Kube, ref: ResourceRef, config_map: Obj) -> None:
    """The Job's ConfigMap: created, or found as this resource made it. One of that name that
    this resource does not control is left alone, and the run waits (the error names it)."""
    if _create(kube, config_map):
        return
    name = config_map["metadata"]["name"]
    found = kube.get("ConfigMap", ref.namespace, name)
    if found is not None and not _controlled_by(found, ref):
        raise ApiError(
            409,
            f"ConfigMap {ref.namespace}/{name} exists and is not controlled by "
            f"WhisperFineTune {ref.name}; delete or rename it to let the run start",
        )


def delete_config(kube: Kube, ref: ResourceRef, job_name: str) -> None:
    """The ConfigMap of a Job that is gone (only if this resource controls it)."""
    name = config_map_name(job_name)
    found = kube.get("ConfigMap", ref.namespace, name)
    if found is not None and _controlled_by(found, ref):
        kube.delete("ConfigMap", ref.namespace, name)


def _controlled_by(obj: Obj, ref: ResourceRef) -> bool:
    return any(
        o.get("controller") and o.get("uid") == ref.uid
        for o in obj["metadata"].get("ownerReferences") or []
    )


def _create(kube: Kube, obj: Obj) -> bool:
    """Create; False when it already exists (a replayed event or a restarted operator)."""
    try:
        kube.create(obj)
        return True
    except AlreadyExists:
        return False


def write_status(ctx: Context, body: Obj, compute: Callable[[Obj], Change]) -> dict[str, Any]:
    """Patch status with `compute(resource)`, conditional on resourceVersion; re-read on 409;
    then post the Events the change announces (each after the write it describes).

    The operator writes every status field but `status.trainer`, which only the trainer
    writes; the precondition makes sure a decision made on an older copy (an older report of
    the trainer, an older Job) is never written over a newer one.
    """
    meta = body["metadata"]
    fresh: Obj | None = body
    for _ in range(_STATUS_WRITE_ATTEMPTS):
        if fresh is None:
            return {}
        change = compute(fresh)
        patch = change.patch
        if not patch:
            ctx.phases.set(
                meta["namespace"], meta["name"], (fresh.get("status") or {}).get("phase")
            )
            return {}
        guarded = {"metadata": {"resourceVersion": fresh["metadata"]["resourceVersion"]}}
        try:
            written = ctx.kube.patch(
                KIND, meta["namespace"], meta["name"], {**guarded, "status": patch}, sub="status"
            )
        except Transient as err:
            if err.code != 409:
                raise
            fresh = ctx.kube.get(KIND, meta["namespace"], meta["name"])
            continue
        for event in change.events:
            ctx.post_event(written or fresh, event)
        old_status = fresh.get("status") or {}
        ctx.phases.set(meta["namespace"], meta["name"], patch.get("phase", old_status.get("phase")))
        return patch
    raise Transient(409, f"{meta['namespace']}/{meta['name']}: status kept changing; retrying")


def ensure_run(ctx: Context, body: Obj) -> str:
    """Make the cluster run the resource's current spec; returns the Job's name."""
    kube, ref = ctx.kube, _ref(body)
    spec, problems = problems_of(body, ctx.settings)
    if spec is None:
        message = "; ".join(problems)
        for stale in owned_jobs(kube, ref):  # an earlier, valid spec's run is not wanted now
            kube.delete("Job", ref.namespace, stale["metadata"]["name"])
        write_status(ctx, body, lambda fresh: spec_invalid(fresh, message, now_rfc3339()))
        raise InvalidSpec(message)
    ensure_rbac(kube, ref, spec)
    jobs = owned_jobs(kube, ref)
    job = current_job(jobs, ref.generation, spec_hash(spec))
    if job is None:
        rendered = render_job(ref, spec, ctx.settings)
        name = rendered["metadata"]["name"]
        ensure_config(kube, ref, render_config_map(ref, spec, name))
        try:
            job = kube.create(rendered)
            metrics.JOBS_CREATED.inc()
        except AlreadyExists:
            existing = kube.get("Job", ref.namespace, name)
            if existing is None or existing["metadata"].get("deletionTimestamp"):
                raise Transient(409, f"Job {name} is being deleted; retrying") from None
            job = existing
    elif bool(job["spec"].get("suspend")) != spec.suspend:
        job = kube.patch(
            "Job", ref.namespace, job["metadata"]["name"], {"spec": {"suspend": spec.suspend}}
        )
    job_name = job["metadata"]["name"]
    for old in jobs:
        if old["metadata"]["name"] != job_name and not old["metadata"].get("deletionTimestamp"):
            kube.delete("Job", ref.namespace, old["metadata"]["name"])
            delete_config(kube, ref, old["metadata"]["name"])
    pods = _pods(kube, job)
    fresh = kube.get(KIND, ref.namespace, ref.name)
    if fresh is not None:
        write_status(ctx, fresh, _observe_at(ref.generation, job, pods))
    return str(job_name)


def sync_status(ctx: Context, namespace: str, name: str) -> None:
    """Bring the status of one resource up to date with its current Job and Pods."""
    body = ctx.kube.get(KIND, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return
    try:
        spec = WhisperFineTuneSpec.model_validate(body.get("spec") or {})
    except ValidationError:
        return  # ensure_run reported it; there is no Job to follow
    ref = _ref(body)
    job = current_job(owned_jobs(ctx.kube, ref), ref.generation, spec_hash(spec))
    if job is None:
        return  # not created yet, or an old generation's Job: ensure_run owns that moment
    pods = _pods(ctx.kube, job)
    write_status(ctx, body, _observe_at(ref.generation, job, pods))


def _observe_at(generation: int, job: Obj, pods: list[Obj]) -> Callable[[Obj], Change]:
    """observe(), only while the resource is at the generation `job` was picked for.

    A re-read after a 409 may show a newer spec, whose run is its own handler's to describe;
    writing this Job's view under the newer observedGeneration would name the old run as
    the current one.
    """

    def compute(resource: Obj) -> Change:
        if int(resource["metadata"].get("generation") or 1) != generation:
            return Change({})
        return observe_change(resource, job, pods, now_rfc3339())

    return compute


def resync(ctx: Context) -> int:
    """Re-sync every resource whose run is not finished; return how many were synced.

    The controller's resync period: Kopf does not retry event handlers, so a status write lost
    to a transient error would otherwise stay stale until the next Job or Pod event.
    """
    synced = 0
    for body in ctx.kube.list_everywhere(KIND, ctx.settings.namespaces):
        meta, status = body["metadata"], body.get("status") or {}
        finished = status.get("phase") in TERMINAL_PHASES
        if finished and status.get("observedGeneration") == meta.get("generation"):
            continue
        try:
            sync_status(ctx, meta["namespace"], meta["name"])
            synced += 1
        except ApiError as err:  # one resource's trouble must not stop the others
            LOG.warning("resync of %s/%s failed: %s", meta["namespace"], meta["name"], err)
    return synced
