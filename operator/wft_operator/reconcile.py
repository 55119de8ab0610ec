"""The operator's two reconcile flows, as short lists of steps over `Kube` and pure functions.

`parse`: where a resource enters (the handlers' decorator, `sync_status`), the one check of its
spec: the typed model, then the platform's guard-rails; a spec that fails it is `refuse`d
(status Failed with InvalidSpec, the fields named; no Job runs it).

`ensure_run`: on create, resume and spec change, with the parsed resource. Create the trainer's
RBAC, the Job of the current spec, its ConfigMap and (several nodes) its headless Service
exactly as `wft render` shows (AlreadyExists is success only for an object this resource
controls; anything else in the way is a ResourceConflict, left as it is); delete Jobs of
earlier specs (and their ConfigMaps and Services); give a
kept Job the run-neutral fields in place (`job_update`); write status.

`sync_status`: on any event of a Job or Pod of a resource: status from `status.observe`.

The current Job is the one named for the resource's generation, or else the one whose spec
digest (`wft_api.identity.spec_hash`, the spec without its run-neutral fields) matches: a
change of `suspend`, `activeDeadlineSeconds`, `backoffLimit`, `ttlSecondsAfterFinished` or
`queueName` bumps the generation too, yet must keep the running Job rather than restart
training, and a restarted operator must recognise the Job it made.
No Kopf here: `handlers.py` maps the exceptions to Kopf's and posts the Events.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from wft_api.conditions import Reason, now_rfc3339, true_condition
from wft_api.identity import spec_hash
from wft_api.v1alpha1 import API_VERSION, KIND, TERMINAL_PHASES, ResourceRef, WhisperFineTuneSpec
from wft_api.validation import parse_resource

from . import metrics
from .kube import AlreadyExists, ApiError, Kube, Obj, Transient
from .render import (
    ANNOTATION_SUSPEND,
    KUEUE_QUEUE_LABEL,
    LABEL_GENERATION,
    LABEL_NAME,
    LABEL_SPEC_HASH,
    config_map_name,
    guard_rail_problems,
    render_config_map,
    render_job,
    render_role,
    render_role_binding,
    render_service,
    render_service_account,
    service_name,
)
from .settings import Settings
from .status import Change, Event, blocked, observe_change, spec_invalid

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


@dataclass(frozen=True)
class Resource:
    """A WhisperFineTune as the flows take it: its spec parsed once, where it came in."""

    body: Obj  # as read (metadata.resourceVersion and status, for the status write)
    ref: ResourceRef
    spec: WhisperFineTuneSpec


def parse(body: Obj, settings: Settings) -> Resource:
    """The typed resource, or InvalidSpec naming every field that is wrong.

    The model (`wft_api.validation.parse_resource`), then the platform's guard-rails. The API
    server has run the CRD's schema and CEL rules before the operator sees the resource; they
    are generated from this same model, so they are not run a second time here.
    """
    meta = body.get("metadata") or {}
    doc = {
        "apiVersion": body.get("apiVersion", API_VERSION),
        "kind": body.get("kind", KIND),
        "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace")},
        "spec": body.get("spec"),
    }
    found, resource = parse_resource(doc)
    problems = [str(p) for p in found]
    if resource is not None:
        problems += guard_rail_problems(resource.spec, settings)
    if resource is None or problems:
        raise InvalidSpec("; ".join(problems or ["spec: not a valid WhisperFineTune spec"]))
    return Resource(body, _ref(body), resource.spec)


def refuse(ctx: Context, body: Obj, invalid: InvalidSpec) -> NoReturn:
    """An invalid spec: no Job runs it (an earlier, valid spec's run is not wanted now either);
    the status says which fields are wrong; then `invalid` is raised again."""
    kube, ref, message = ctx.kube, _ref(body), str(invalid)
    for stale in owned_jobs(kube, ref):
        kube.delete("Job", ref.namespace, stale["metadata"]["name"])
        delete_job_children(kube, ref, stale["metadata"]["name"])
    write_status(ctx, body, lambda fresh: spec_invalid(fresh, message, now_rfc3339()))
    raise invalid


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


def ensure_config(kube: Kube, ref: ResourceRef, config_map: Obj) -> None:
    """The Job's ConfigMap: created, or found as this resource made it; one of that name that
    this resource does not control is a ResourceConflict, left as it is (`ensure_child`)."""
    ensure_child(kube, ref, config_map)


def delete_job_children(kube: Kube, ref: ResourceRef, job_name: str) -> None:
    """The ConfigMap and the headless Service (several nodes) of a Job that is gone, each only
    if this resource controls it."""
    for kind, name in (
        ("ConfigMap", config_map_name(job_name)),
        ("Service", service_name(job_name)),
    ):
        found = kube.get(kind, ref.namespace, name)
        if found is not None and controlled_by(found, ref.uid):
            kube.delete(kind, ref.namespace, name)


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
        raise Transient(
            409, "Conflict", f"{kind} {namespace}/{name} was deleted meanwhile; retrying"
        )
    controller = controller_of(existing)
    if controlled_by(existing, ref.uid):
        if existing["metadata"].get("deletionTimestamp"):
            raise Transient(
                409, "Conflict", f"{kind} {namespace}/{name} is being deleted; retrying"
            )
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
            "Conflict",
            f"{kind} {namespace}/{name} belongs to an earlier {KIND} of this name ({holder}); "
            "waiting for the garbage collector to remove it",
        )
    raise ResourceConflict(kind, namespace, name, f"its controller is {holder}")


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
    raise Transient(
        409, "Conflict", f"{meta['namespace']}/{meta['name']}: status kept changing; retrying"
    )


def ensure_run(ctx: Context, resource: Resource) -> str:
    """Make the cluster run the resource's current spec; returns the Job's name."""
    kube, ref, spec, body = ctx.kube, resource.ref, resource.spec, resource.body
    try:
        ensure_rbac(kube, ref, spec)
        jobs = owned_jobs(kube, ref)
        job = current_job(jobs, ref.generation, spec_hash(spec))
        rendered = render_job(ref, spec, ctx.settings)
        if (
            job is not None
            and _job_generation(job) < ref.generation  # the spec changed since it failed
            and retry_with_new_limits(job, rendered)
        ):
            job = None  # a new run, for this generation; the failed one is deleted below
        if job is None and finished_without_job(body, jobs):
            LOG.info(
                "%s/%s: generation %d finished and its Job is gone (ttlSecondsAfterFinished or "
                "deleted): nothing to run again",
                ref.namespace,
                ref.name,
                ref.generation,
            )
            return str((body.get("status") or {}).get("jobName") or "")
        if job is None:
            job_name = rendered["metadata"]["name"]
            ensure_config(kube, ref, render_config_map(ref, spec, job_name))
            service = render_service(ref, spec, job_name)
            if service is not None:  # before the pods, which look their peers up through it
                ensure_child(kube, ref, service)
            job, created = ensure_child(kube, ref, rendered)
            if created:
                metrics.JOBS_CREATED.inc()
        else:
            keep_service(kube, ref, spec, job)
    except ResourceConflict as conflict:
        message = str(conflict)
        write_status(
            ctx,
            body,
            lambda fresh: blocked(fresh, Reason.RESOURCE_CONFLICT, message, now_rfc3339()),
        )
        raise
    else:
        job = update_in_place(kube, job, rendered)
    job_name = job["metadata"]["name"]
    for old in jobs:
        if old["metadata"]["name"] != job_name and not old["metadata"].get("deletionTimestamp"):
            kube.delete("Job", ref.namespace, old["metadata"]["name"])
            delete_job_children(kube, ref, old["metadata"]["name"])
    pods = _pods(kube, job)
    fresh = kube.get(KIND, ref.namespace, ref.name)
    if fresh is not None:
        write_status(ctx, fresh, _observe_at(ref.generation, job, pods))
    return str(job_name)


def finished_without_job(body: Obj, jobs: list[Obj]) -> bool:
    """The status already tells the end of this generation's run, and no Job of it is left.

    The garbage a finished run leaves (ttlSecondsAfterFinished) must not start it again: at
    every operator restart, each finished resource would otherwise get a new Job (whose trainer
    would find the results and stop). A conflict is no end: it clears when the object goes.
    """
    status = body.get("status") or {}
    generation = int(body["metadata"].get("generation") or 1)
    if jobs or status.get("observedGeneration") != generation or not status.get("jobName"):
        return False
    if status.get("phase") == "Succeeded":
        return True
    failed = true_condition(body, "Failed")
    return (
        status.get("phase") == "Failed"
        and failed is not None
        and failed.get("reason") not in (Reason.RESOURCE_CONFLICT, Reason.INVALID_SPEC)
    )


_LIMITS = ("activeDeadlineSeconds", "backoffLimit")


def retry_with_new_limits(job: Obj, rendered: Obj) -> bool:
    """A failed Job whose limits the spec now changes (raising activeDeadlineSeconds after
    DeadlineExceeded, backoffLimit after BackoffLimitExceeded): a failed Job never runs again,
    so the new limits get a new run (from step 0, in the new generation's folder)."""
    spec, want = job.get("spec") or {}, rendered["spec"]
    failed = true_condition(job, "Failed") is not None
    return failed and any(spec.get(k) != want.get(k) for k in _LIMITS)


def job_update(job: Obj, rendered: Obj) -> tuple[Obj | None, Obj | None, list[str]]:
    """What to change in the live `job` so that it takes the run-neutral fields of `rendered`
    (the same run's Job as the spec renders it now), without replacing it.

    Returns (a patch to apply first, a patch to apply then, notes on what is left be). In
    Kubernetes a Job's suspend, activeDeadlineSeconds, backoffLimit and ttlSecondsAfterFinished
    are mutable; a finished Job only takes ttlSecondsAfterFinished (the others would change
    nothing). `spec.suspend` is set only when the spec's wish changed since the operator last
    set it (annotation wft.dev/suspend): Kueue suspends and resumes queued Jobs itself. Kueue
    refuses a new queue-name label on a Job that is not suspended: it is relabelled only while
    suspended (before a resume, so in a first patch), else left be for this run.
    """
    spec, want = job.get("spec") or {}, rendered["spec"]
    meta, want_meta = job["metadata"], rendered["metadata"]
    finished = bool(true_condition(job, "Complete") or true_condition(job, "Failed"))
    notes: list[str] = []
    changes: dict[str, Any] = {}
    annotations: dict[str, Any] = {}
    changes_meta: dict[str, Any] = {}
    if spec.get("ttlSecondsAfterFinished") != want.get("ttlSecondsAfterFinished"):
        changes["ttlSecondsAfterFinished"] = want.get("ttlSecondsAfterFinished")
    if not finished:
        for key in _LIMITS:
            if spec.get(key) != want.get(key):
                changes[key] = want.get(key)
        wanted = "true" if want.get("suspend") else "false"
        labels = meta.get("labels") or {}
        asked = (meta.get("annotations") or {}).get(ANNOTATION_SUSPEND)
        if asked is None:  # a Job from before the annotation: Kueue may be what holds it
            asked = (
                wanted if KUEUE_QUEUE_LABEL in labels else str(bool(spec.get("suspend"))).lower()
            )
        if asked != wanted:
            changes["suspend"] = bool(want.get("suspend"))
            annotations[ANNOTATION_SUSPEND] = wanted
    first: Obj | None = None
    queue = (want_meta.get("labels") or {}).get(KUEUE_QUEUE_LABEL)
    relabel = {"labels": {KUEUE_QUEUE_LABEL: queue}}
    if (meta.get("labels") or {}).get(KUEUE_QUEUE_LABEL) != queue:
        if finished:
            pass  # nothing left to queue
        elif spec.get("suspend"):
            first = {"metadata": relabel}  # while still suspended, before any resume
        elif changes.get("suspend"):
            changes_meta = relabel  # suspended by this very patch: Kueue allows it there
        else:
            notes.append(
                f"spec.queueName {queue!r} applies to the next run: Kueue does not move a Job "
                "that is running or finished to another queue"
            )
    if annotations:
        changes_meta["annotations"] = annotations
    then: Obj = {"spec": changes} if changes else {}
    if changes_meta:
        then["metadata"] = changes_meta
    return first, then or None, notes


def update_in_place(kube: Kube, job: Obj, rendered: Obj) -> Obj:
    """Apply `job_update`: the running Job takes the run-neutral fields; training goes on."""
    meta = job["metadata"]
    first, then, notes = job_update(job, rendered)
    for note in notes:
        LOG.info("%s/%s: %s", meta["namespace"], meta["name"], note)
    for patch in (first, then):
        if patch:
            job = kube.patch("Job", meta["namespace"], meta["name"], patch)
    return job


def keep_service(kube: Kube, ref: ResourceRef, spec: WhisperFineTuneSpec, job: Obj) -> None:
    """The headless Service of a running Job across nodes, made again where it is missing
    (deleted by hand, lost in an upgrade): the pods find pod 0 through it, and a pod that starts
    again (a retry, a preemption) without it could not rendezvous."""
    if true_condition(job, "Complete") or true_condition(job, "Failed"):
        return
    service = render_service(ref, spec, job["metadata"]["name"])
    if service is None:
        return
    meta = service["metadata"]
    if kube.get("Service", meta["namespace"], meta["name"]) is None:
        LOG.info(
            "%s/%s: the Service %s is missing; creating it", ref.namespace, ref.name, meta["name"]
        )
        ensure_child(kube, ref, service)


def sync_status(ctx: Context, namespace: str, name: str) -> None:
    """Bring the status of one resource up to date with its current Job and Pods."""
    body = ctx.kube.get(KIND, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return
    try:
        resource = parse(body, ctx.settings)
    except InvalidSpec:
        return  # refused where it came in (`refuse`); there is no Job to follow
    ref = resource.ref
    job = current_job(owned_jobs(ctx.kube, ref), ref.generation, spec_hash(resource.spec))
    if job is None:
        return  # not created yet, or an old generation's Job: ensure_run owns that moment
    try:
        keep_service(ctx.kube, ref, resource.spec, job)
    except ResourceConflict as conflict:  # ensure_run reported it in the status when it began
        LOG.warning("%s/%s: %s", namespace, name, conflict)
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
