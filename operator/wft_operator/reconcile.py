"""The operator's two reconcile flows, as short lists of steps over `Kube` and pure functions.

`ensure_run`: on create, resume and spec change. Validate; create the trainer's RBAC and the
Job of the current spec exactly as `wft render` shows (AlreadyExists is success); delete Jobs
of earlier specs; pause or resume the Job for `spec.suspend`; write status.

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
from wft_api.conditions import Reason, now_rfc3339
from wft_api.v1alpha1 import API_VERSION, KIND, TERMINAL_PHASES, ResourceRef, WhisperFineTuneSpec
from wft_api.validation import validate_object

from . import metrics
from .kube import AlreadyExists, ApiError, Kube, Obj, Transient
from .render import (
    LABEL_GENERATION,
    LABEL_NAME,
    LABEL_SPEC_HASH,
    guard_rail_problems,
    render_job,
    render_role,
    render_role_binding,
    render_service_account,
    spec_hash,
)
from .settings import Settings
from .status import Event, blocked, observe, spec_invalid, transition_event

LOG = logging.getLogger("wft_operator")

_STATUS_WRITE_ATTEMPTS = 5


class InvalidSpec(Exception):
    """The spec will never work as it is; the message names the field(s)."""


class ResourceConflict(Exception):
    """An object of the name this resource needs exists and is not controlled by it.

    It is left exactly as it is (as Helm refuses to adopt and the Deployment controller never
    takes over a ReplicaSet another controller owns); the status names it, and the operator
    checks again later: a person deletes or renames it, or renames this resource.
    """

    def __init__(self, kind: str, namespace: str, name: str, holder: str) -> None:
        self.kind, self.namespace, self.name = kind, namespace, name
        super().__init__(
            f"{kind} {namespace}/{name} already exists and is not controlled by this "
            f"WhisperFineTune ({holder}); it was left as it is. Delete or rename that {kind}, "
            "or give this resource another name"
        )


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


def controller_of(obj: Obj) -> dict[str, Any] | None:
    """The ownerReference with controller=true, if any (at most one by API rules)."""
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return next((r for r in refs if r.get("controller")), None)


def controlled_by(obj: Obj, uid: str | None) -> bool:
    controller = controller_of(obj)
    return bool(uid) and controller is not None and controller.get("uid") == uid


def owned_jobs(kube: Kube, ref: ResourceRef) -> list[Obj]:
    """Jobs of this resource (by label), controlled by this incarnation of it (by uid)."""
    jobs = kube.list("Job", ref.namespace, {LABEL_NAME: ref.name})
    return [j for j in jobs if controlled_by(j, ref.uid)]


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
    """The Job's Pods: by label, and controlled by that Job (a look-alike Pod is not one)."""
    labels = job["metadata"]["labels"]
    selector = {LABEL_NAME: labels[LABEL_NAME], LABEL_GENERATION: labels[LABEL_GENERATION]}
    pods = kube.list("Pod", job["metadata"]["namespace"], selector)
    return [p for p in pods if controlled_by(p, job["metadata"].get("uid"))]


def ensure_rbac(kube: Kube, ref: ResourceRef, spec: WhisperFineTuneSpec) -> None:
    """ServiceAccount, Role and RoleBinding, each created or, when this resource controls it
    already, brought in line (the binding follows serviceAccountName); one that exists but
    belongs to anything else raises ResourceConflict before anything is written."""
    sa = render_service_account(ref, spec)
    wanted = [*([sa] if sa else []), render_role(ref), render_role_binding(ref, spec)]
    for obj in wanted:
        existing, _ = ensure_child(kube, ref, obj)
        meta = obj["metadata"]
        if obj["kind"] == "Role" and existing.get("rules") != obj["rules"]:
            kube.patch("Role", meta["namespace"], meta["name"], {"rules": obj["rules"]})
        if obj["kind"] == "RoleBinding" and existing.get("subjects") != obj["subjects"]:
            kube.patch(
                "RoleBinding", meta["namespace"], meta["name"], {"subjects": obj["subjects"]}
            )


def ensure_child(kube: Kube, ref: ResourceRef, obj: Obj) -> tuple[Obj, bool]:
    """Create `obj` (-> it, True), or return the existing object of its name (-> it, False)
    when this resource controls it.

    AlreadyExists is success only for an object whose controller ownerReference carries this
    resource's uid (a replayed event, a restarted operator). One left by an earlier resource
    of the same name (deleted, its children not yet garbage-collected) is waited for; any other
    raises ResourceConflict and is not touched.
    """
    try:
        return kube.create(obj), True
    except AlreadyExists:
        pass
    kind, meta = obj["kind"], obj["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    existing = kube.get(kind, namespace, name)
    if existing is None:
        raise Transient(409, f"{kind} {namespace}/{name} was deleted meanwhile; retrying")
    controller = controller_of(existing)
    if controlled_by(existing, ref.uid):
        if existing["metadata"].get("deletionTimestamp"):
            raise Transient(409, f"{kind} {namespace}/{name} is being deleted; retrying")
        return existing, False
    if controller is None:
        raise ResourceConflict(kind, namespace, name, "it has no controller")
    holder = f"{controller.get('kind')} {controller.get('name')} (uid {controller.get('uid')})"
    if (
        controller.get("kind") == KIND
        and controller.get("name") == ref.name
        and str(controller.get("apiVersion", "")).split("/")[0] == API_VERSION.split("/")[0]
    ):
        # A deleted resource's child: the garbage collector removes it in a moment (or, with
        # --cascade=orphan, drops its ownerReference, and it is someone else's from then on).
        raise Transient(
            409,
            f"{kind} {namespace}/{name} belongs to an earlier {KIND} of this name ({holder}); "
            "waiting for the garbage collector to remove it",
        )
    raise ResourceConflict(kind, namespace, name, f"its controller is {holder}")


def write_status(
    ctx: Context, body: Obj, compute: Callable[[Obj], dict[str, Any]]
) -> dict[str, Any]:
    """Patch status with `compute(resource)`, conditional on resourceVersion; re-read on 409.

    The trainer writes status too: the precondition makes sure nothing it wrote in between
    is overwritten by a decision made on an older copy.
    """
    meta = body["metadata"]
    fresh: Obj | None = body
    for _ in range(_STATUS_WRITE_ATTEMPTS):
        if fresh is None:
            return {}
        patch = compute(fresh)
        if not patch:
            ctx.phases.set(
                meta["namespace"], meta["name"], (fresh.get("status") or {}).get("phase")
            )
            return {}
        guarded = {"metadata": {"resourceVersion": fresh["metadata"]["resourceVersion"]}}
        try:
            ctx.kube.patch(
                KIND, meta["namespace"], meta["name"], {**guarded, "status": patch}, sub="status"
            )
        except Transient as err:
            if err.code != 409:
                raise
            fresh = ctx.kube.get(KIND, meta["namespace"], meta["name"])
            continue
        old_status = fresh.get("status") or {}
        event = transition_event(old_status, patch)
        if event:
            ctx.post_event(fresh, event)
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
    try:
        ensure_rbac(kube, ref, spec)
        jobs = owned_jobs(kube, ref)
        job = current_job(jobs, ref.generation, spec_hash(spec))
        if job is None:
            job, created = ensure_child(kube, ref, render_job(ref, spec, ctx.settings))
            if created:
                metrics.JOBS_CREATED.inc()
    except ResourceConflict as conflict:
        message = str(conflict)
        write_status(
            ctx,
            body,
            lambda fresh: blocked(fresh, Reason.RESOURCE_CONFLICT, message, now_rfc3339()),
        )
        raise
    if bool(job["spec"].get("suspend")) != spec.suspend:
        job = kube.patch(
            "Job", ref.namespace, job["metadata"]["name"], {"spec": {"suspend": spec.suspend}}
        )
    job_name = job["metadata"]["name"]
    for old in jobs:
        if old["metadata"]["name"] != job_name and not old["metadata"].get("deletionTimestamp"):
            kube.delete("Job", ref.namespace, old["metadata"]["name"])
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


def _observe_at(generation: int, job: Obj, pods: list[Obj]) -> Callable[[Obj], dict[str, Any]]:
    """observe(), only while the resource is at the generation `job` was picked for.

    A re-read after a 409 may show a newer spec, whose run is its own handler's to describe;
    writing this Job's view under the newer observedGeneration would name the old run as
    the current one.
    """

    def compute(resource: Obj) -> dict[str, Any]:
        if int(resource["metadata"].get("generation") or 1) != generation:
            return {}
        return observe(resource, job, pods, now_rfc3339())

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
