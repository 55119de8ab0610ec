"""Progress out of the trainer: its report in `status.trainer`, or a progress bar locally.

The pipeline talks to a `Reporter`; what it says becomes, in the cluster, the trainer's report
on the resource (`status.trainer`, the one status field the trainer writes: the operator alone
writes phase, message, conditions and the rest, deriving them from the Job, its Pods and this
report), and in `wft train` a progress bar. The report body is a pure function (tested as data).

Rules for the cluster reporter: every write is a merge patch scoped to `status.trainer` that
replaces the whole report (fields it does not know are sent as null), so what a previous run or
attempt left there never mixes into this one; the report names its run (`generation`, the
Job's) and its attempt (`pod`). Before each write the trainer reads the status: a report of a
newer run there means this run was superseded, and it stops reporting. Stage changes and the
final report go out at once; progress at most once per 10 s (the latest value wins); an
unreachable API is logged and never fails the training: the status is a view, the adapter in S3
is the result. No NaN or infinity ever goes out (`finite_json`): JSON has no such numbers.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections import deque
from typing import Any

from wft_api.conditions import now_rfc3339
from wft_api.kube_client import api_client
from wft_api.v1alpha1 import (
    GROUP,
    MAX_MESSAGE_LENGTH,
    PLURAL,
    VERSION,
    DatasetStatus,
    Metrics,
    Progress,
    ResourceRef,
    TrainerStatus,
)

log = logging.getLogger(__name__)

MIN_PATCH_INTERVAL_S = 10.0


class EtaClock:
    """ETA from the measured duration of recent steps (the first, compiling step excluded)."""

    def __init__(self, window: int = 20) -> None:
        self.times: deque[float] = deque(maxlen=window)
        self.last_step = 0

    def add(self, step: int, seconds: float) -> None:
        if step <= self.last_step:
            self.times.clear()  # training started over (batchSize auto backed off): new pace
        self.last_step = step
        if step > 1 and math.isfinite(seconds):
            self.times.append(seconds)

    def eta(self, step: int, total: int) -> int | None:
        if not self.times:
            return None
        return int(sum(self.times) / len(self.times) * max(0, total - step))


def progress_body(
    step: int, total: int, eta_seconds: int | None, epoch: float | None
) -> dict[str, Any]:
    pct = round(100.0 * step / total, 1) if total else None
    prog = Progress(step=step, total_steps=total, percent=pct, eta_seconds=eta_seconds, epoch=epoch)
    return {"progress": prog.to_dict()}


def finite_json(value: Any) -> Any:
    """`value` without NaN or infinite floats, which JSON cannot carry (the API server's decoder
    refuses them, or stores them and every later list of the namespace fails): left out of a
    mapping, null in a list."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        out = {k: finite_json(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not None or value[k] is None}
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    return value


def metrics_body(**values: Any) -> dict[str, Any]:
    known = {k: v for k, v in finite_json(values).items() if v is not None}
    return {"metrics": Metrics(**known).to_dict()}


def report_body(current: Any, report: dict[str, Any], now: str) -> dict[str, Any]:
    """The merge patch that turns `status.trainer` from `current` into exactly `report`
    (stamped `now`): every key of `current` that the report lacks, at any depth, becomes null.
    Non-finite numbers are left out and the message is cut to what the API stores."""
    body = finite_json({**report, "lastUpdateTime": now})
    message = body.get("message")
    if isinstance(message, str) and len(message) > MAX_MESSAGE_LENGTH:
        body["message"] = message[: MAX_MESSAGE_LENGTH - 3] + "..."
    checked = TrainerStatus.model_validate(body).to_dict()
    return {"status": {"trainer": _replacing(current, checked)}}


def _replacing(current: Any, desired: Any) -> Any:
    if not isinstance(desired, dict) or not isinstance(current, dict):
        return desired
    out: dict[str, Any] = {k: None for k in current if k not in desired}
    out.update({k: _replacing(current.get(k), v) for k, v in desired.items()})
    return out


def superseded(status: dict[str, Any], generation: int) -> bool:
    """A report of a newer run is in status: this run's Job was replaced."""
    theirs = (status.get("trainer") or {}).get("generation")
    return isinstance(theirs, int) and theirs > generation


def pod_name() -> str | None:
    """This pod's name (the downward API's WFT_POD_NAME; a pod's hostname is its name)."""
    return os.environ.get("WFT_POD_NAME") or socket.gethostname() or None


class Reporter:
    """What the pipeline reports; the base class only logs (local runs without a bar)."""

    def stage(self, phase: str, message: str) -> None:
        log.info("%s: %s", phase, message)

    def progress(
        self, step: int, total: int, loss: float, epoch: float, step_seconds: float
    ) -> None:
        pass

    def metrics(self, **values: Any) -> None:
        pass

    def dataset(self, summary: DatasetStatus) -> None:
        pass

    def eval_progress(self, done: int, total: int) -> None:
        pass

    def finished(self, succeeded: bool, reason: str, message: str, adapter_uri: str | None) -> None:
        log.info("%s (%s): %s", "succeeded" if succeeded else "failed", reason, message)

    def close(self) -> None:
        pass


class KubeStatusReporter(Reporter):
    """The trainer's report in `status.trainer`, through the kubernetes client."""

    def __init__(
        self,
        ref: ResourceRef,
        api: Any = None,
        clock: Any = time.monotonic,
        pod: str | None = None,
    ) -> None:
        self.ref = ref
        self.clock = clock
        self.api = api if api is not None else _custom_objects_api()
        self.report: dict[str, Any] = {"generation": ref.generation, "pod": pod or pod_name()}
        self.last_patch = float("-inf")
        self.dirty = False
        self.stopped = False  # superseded by a newer run: nothing more is written
        self.eta = EtaClock()

    def _update(self, body: dict[str, Any], force: bool) -> None:
        self.report = _merge(self.report, body)
        self.dirty = True
        if force or self.clock() - self.last_patch >= MIN_PATCH_INTERVAL_S:
            self._write()

    def _write(self) -> None:
        if self.stopped or not self.dirty:
            return
        try:
            current = self.api.get_namespaced_custom_object_status(
                GROUP, VERSION, self.ref.namespace, PLURAL, self.ref.name
            )
            status = current.get("status") or {}
            if superseded(status, self.ref.generation):
                log.warning(
                    "a newer run of %s/%s reports in its status; this run (generation %d) "
                    "stops reporting",
                    self.ref.namespace,
                    self.ref.name,
                    self.ref.generation,
                )
                self.stopped = True
                return
            self.api.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                self.ref.namespace,
                PLURAL,
                self.ref.name,
                report_body(status.get("trainer"), self.report, now_rfc3339()),
            )
            self.last_patch = self.clock()
            self.dirty = False
        except Exception as err:  # logged: an unreachable API never fails training
            log.warning("status report failed (%s); training goes on", err)  # sent next time

    def stage(self, phase: str, message: str) -> None:
        super().stage(phase, message)
        self._update({"stage": phase, "message": message}, force=True)

    def progress(
        self, step: int, total: int, loss: float, epoch: float, step_seconds: float
    ) -> None:
        self.eta.add(step, step_seconds)
        body = progress_body(step, total, self.eta.eta(step, total), round(epoch, 3))
        body = _merge(body, metrics_body(train_loss=round(loss, 5)))
        self._update(body, force=step == total)

    def metrics(self, **values: Any) -> None:
        self._update(metrics_body(**values), force=False)

    def dataset(self, summary: DatasetStatus) -> None:
        self._update({"dataset": summary.to_dict()}, force=True)

    def finished(self, succeeded: bool, reason: str, message: str, adapter_uri: str | None) -> None:
        super().finished(succeeded, reason, message, adapter_uri)
        body: dict[str, Any] = {"stage": "Succeeded" if succeeded else "Failed", "message": message}
        if adapter_uri:
            body["adapterUri"] = adapter_uri
        self._update(body, force=True)

    def close(self) -> None:
        self._write()  # progress held back by the 10 s rule


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """JSON-merge-patch semantics for building one report out of several."""
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _custom_objects_api() -> Any:
    from kubernetes import client

    return client.CustomObjectsApi(api_client())
