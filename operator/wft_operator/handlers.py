"""Kopf handlers, kept thin: each one finds its resource and calls one flow of `reconcile`.

- create / resume / spec change (generation) of a WhisperFineTune: `reconcile.ensure_run`, with
  the resource parsed once, before it (`@parsed`, as Azimuth Zenith's operator parses the body
  into its model in a decorator): a spec that does not parse is refused there, its status
  naming the fields, and the flow never sees it.
- any event of a trainer Job or Pod (labelled `wft.dev/name`): `reconcile.sync_status`.
- any event of a WhisperFineTune: the resources-by-phase gauge, and `reconcile.sync_status`
  when the trainer's report (`status.trainer`) is new.

No finalizer: the children carry ownerReferences and the garbage collector removes them, so a
resource can always be deleted, also while the operator is down. (Kopf adds a finalizer only
for deletion handlers, daemons and timers; this operator has none. Should one ever be added,
a resource stuck while the operator is gone is freed with:
`kubectl patch wft NAME --type=merge -p '{"metadata":{"finalizers":null}}'`.)
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import kopf
from wft_api.kube_client import NoCluster, api_client
from wft_api.v1alpha1 import GROUP, PLURAL, VERSION

from . import metrics
from .events import EventRecorder
from .kube import ApiError, Kube, Transient
from .reconcile import (
    Context,
    InvalidSpec,
    Resource,
    ResourceConflict,
    ensure_run,
    parse,
    refuse,
    resync,
    sync_status,
)
from .render import LABEL_NAME
from .settings import Settings

LOG = logging.getLogger("wft_operator")
# Kopf's own bookkeeping goes into annotations with this prefix, never into `status`.
ANNOTATION_PREFIX = "operator.wft.dev"
# 409 conflicts clear in a moment; other transient errors (throttling, 5xx) wait longer;
# definite errors (403: missing RBAC, 422) need a person, so retry rarely.
CONFLICT_DELAY_S = 2.0
TRANSIENT_DELAY_S = 15.0
API_ERROR_DELAY_S = 60.0
# An object of the expected name that another owner controls: how often to look again.
CONFLICT_RECHECK_S = 30.0
# How often unfinished resources are re-synced from their Job and Pods (see reconcile.resync).
RESYNC_PERIOD_S = 120.0


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    operator_settings: Settings = memo.get("settings") or Settings.from_env()
    # Handler progress and the last-handled spec live in annotations: `status` is the user's
    # API (and the trainer's), and Kopf's default `status.kopf` would be pruned by the CRD's
    # structural schema anyway.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    # A watch stream cut by a load balancer or NAT without a FIN stays silent forever, and
    # the API server's own watch timeout is 30-60 minutes. Ask the server to end each watch
    # after 5 minutes and give up client-side shortly after, so a dead stream is noticed
    # and re-established within about 5.5 minutes.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    # Namespaces come from WFT_NAMESPACES (or all); watching namespaces and CRDs for changes
    # needs list/watch on them and is not supported by the embedded API.
    settings.scanning.disabled = True
    # Sync handlers run in this pool; each call is a few short API requests.
    settings.execution.max_workers = 16
    # Events are posted explicitly for transitions (events.EventRecorder, the events API);
    # Kopf's own posts (core/v1) are kept for handler errors, its chatter stays in the logs.
    settings.posting.level = logging.WARNING

    api = _api_client()
    kube = Kube(api)
    memo["ctx"] = Context(
        kube=kube,
        settings=operator_settings,
        post_event=EventRecorder(kube).record,
        phases=memo.get("phases") or metrics.PhaseCounts(),
    )
    memo["metrics_served"] = memo.get("metrics_served") or _serve_metrics(operator_settings)
    # A thread, not a Kopf timer: timers put a finalizer on every resource, and this operator
    # keeps resources deletable while it is down.
    memo["resync_stop"] = stop = threading.Event()
    threading.Thread(
        target=_resync_every, args=(memo["ctx"], stop), name="wft-resync", daemon=True
    ).start()


@kopf.on.cleanup()
def stop_resync(memo: kopf.Memo, **_: Any) -> None:
    stop: threading.Event | None = memo.get("resync_stop")
    if stop is not None:
        stop.set()


def _resync_every(ctx: Context, stop: threading.Event) -> None:
    while not stop.wait(RESYNC_PERIOD_S):
        try:
            resync(ctx)
        except ApiError as err:  # the API is away: try again next period
            LOG.warning("resync skipped: %s", err)


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # In a pod: its service account; elsewhere: KUBECONFIG, read now (the kubernetes client's
    # default reads it once at import time).
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


def _api_client() -> Any:
    try:
        return api_client(pool_size=32)  # one per handler thread, and some to spare
    except NoCluster as err:
        raise kopf.PermanentError(str(err)) from None


def _serve_metrics(settings: Settings) -> bool:
    metrics.serve(settings.metrics_port, settings.bind_address)
    return bool(settings.metrics_port)


def _ctx(memo: kopf.Memo) -> Context:
    ctx: Context = memo["ctx"]
    return ctx


def _guarded(handler: str, fn: Callable[[], Any]) -> Any:
    """Run a flow; map its errors to Kopf's retry semantics and count them."""
    try:
        return fn()
    except InvalidSpec as err:
        metrics.RECONCILE_ERRORS.labels(handler=handler, kind="InvalidSpec").inc()
        raise kopf.PermanentError(str(err)) from None
    except ResourceConflict as err:
        # Needs a person, yet clears once the object in the way is gone: check again now and
        # then (the status says what is in the way), as the Deployment controller re-queues.
        metrics.RECONCILE_ERRORS.labels(handler=handler, kind="ResourceConflict").inc()
        raise kopf.TemporaryError(str(err), delay=CONFLICT_RECHECK_S) from None
    except Transient as err:
        metrics.RECONCILE_ERRORS.labels(handler=handler, kind="Transient").inc()
        delay = CONFLICT_DELAY_S if err.code == 409 else TRANSIENT_DELAY_S
        raise kopf.TemporaryError(str(err), delay=delay) from None
    except ApiError as err:
        metrics.RECONCILE_ERRORS.labels(handler=handler, kind=f"Http{err.code}").inc()
        raise kopf.TemporaryError(str(err), delay=API_ERROR_DELAY_S) from None


def parsed(handler: str) -> Callable[[Callable[[Context, Resource], object]], Callable[..., None]]:
    """Run a flow on the typed resource: the body is parsed once, here (`reconcile.parse`), and
    a spec that does not parse is refused (`reconcile.refuse`) before the flow would run.

    The wrapper keeps the flow's name (functools.wraps): Kopf derives the handler's id from it,
    and the id keys its progress annotations on every resource.
    """

    def decorate(flow: Callable[[Context, Resource], object]) -> Callable[..., None]:
        @functools.wraps(flow)
        def kopf_handler(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
            ctx, raw = _ctx(memo), dict(body)

            def run() -> None:
                try:
                    resource = parse(raw, ctx.settings)
                except InvalidSpec as invalid:
                    refuse(ctx, raw, invalid)
                flow(ctx, resource)

            _guarded(handler, run)

        return kopf_handler

    return decorate


# Handlers return nothing: Kopf would store a result in `status.<handler>`.
@kopf.on.create(GROUP, VERSION, PLURAL)
@parsed("create")
def on_create(ctx: Context, resource: Resource) -> None:
    ensure_run(ctx, resource)


@kopf.on.resume(GROUP, VERSION, PLURAL)
@parsed("resume")
def on_resume(ctx: Context, resource: Resource) -> None:
    # After a restart: the Job may exist already (found, not duplicated), and status may
    # have missed events while the operator was away.
    ensure_run(ctx, resource)


# field="spec": status writes (ours and the trainer's) and Kopf's annotations never trigger it.
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
@parsed("update")
def on_spec_change(ctx: Context, resource: Resource) -> None:
    ensure_run(ctx, resource)


@kopf.on.event("batch", "v1", "jobs", labels={LABEL_NAME: kopf.PRESENT})
def on_job_event(body: kopf.Body, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    _follow(body, memo, logger, "job")


@kopf.on.event("", "v1", "pods", labels={LABEL_NAME: kopf.PRESENT})
def on_pod_event(body: kopf.Body, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    _follow(body, memo, logger, "pod")


def _follow(body: kopf.Body, memo: kopf.Memo, logger: Any, handler: str) -> None:
    """Map a Job/Pod event to its resource and sync that resource's status."""
    namespace = body.metadata.namespace
    name = body.metadata.labels.get(LABEL_NAME)
    if not namespace or not name:
        return
    try:
        sync_status(_ctx(memo), namespace, name)
    except ApiError as err:
        # Event handlers are not retried; the next event (or the resume at restart) resyncs.
        metrics.RECONCILE_ERRORS.labels(handler=handler, kind=type(err).__name__).inc()
        logger.warning(f"status of {namespace}/{name} not updated: {err}")


@kopf.on.event(GROUP, VERSION, PLURAL)
def on_resource_event(type: str, body: kopf.Body, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    ctx = _ctx(memo)
    namespace, name = body.metadata.namespace or "", body.metadata.name or ""
    reports: dict[str, Any] = memo.setdefault("trainer_reports", {})
    if type == "DELETED":
        ctx.phases.forget(namespace, name)
        reports.pop(body.metadata.uid or "", None)
        return
    status = body.get("status") or {}
    ctx.phases.set(namespace, name, status.get("phase"))
    # A new report of the trainer (its stage, its adapter): the phase and conditions follow.
    # Kopf's diff base holds no status, hence this event handler; our own status writes
    # leave the report as it was and cause no sync.
    report = json.dumps(status.get("trainer"), sort_keys=True) if status.get("trainer") else None
    uid = body.metadata.uid or ""
    if report and reports.get(uid) != report:
        reports[uid] = report
        try:
            sync_status(ctx, namespace, name)
        except ApiError as err:
            metrics.RECONCILE_ERRORS.labels(handler="report", kind=type_name(err)).inc()
            logger.warning(f"status of {namespace}/{name} not updated: {err}")


def type_name(err: Exception) -> str:
    return type(err).__name__
