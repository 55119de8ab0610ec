"""Progress out of the trainer: status patches on the resource, or a progress bar locally.

The pipeline talks to a `Reporter`; what it says becomes, in the cluster, merge patches on the
resource's /status (the trainer's ServiceAccount may get and patch only that), and in
`wft train` a progress bar. The patch bodies are pure functions (tested as data).

Rules for the cluster reporter: stage changes and the final patch go out at once; progress at
most once per 10 s (the latest value wins); an unreachable API is logged and never fails the
training: the status is a view, the adapter in S3 is the result. No NaN or infinity ever goes
out (`finite_json`): JSON has no such numbers.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from typing import Any

from wft_api.conditions import ConditionType, Reason, now_rfc3339, set_condition
from wft_api.v1alpha1 import GROUP, PLURAL, VERSION, DatasetStatus, Metrics, Progress, ResourceRef

log = logging.getLogger(__name__)

MIN_PATCH_INTERVAL_S = 10.0

# phase -> the Running condition's reason while in it
STAGE_REASONS = {
    "Preparing": Reason.PREPARING,
    "Training": Reason.TRAINING,
    "Evaluating": Reason.EVALUATING,
    "Uploading": Reason.UPLOADING,
}


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


def stage_body(
    conditions: list[dict[str, Any]], phase: str, message: str, generation: int
) -> dict[str, Any]:
    conds = set_condition(
        conditions, ConditionType.RUNNING, "True", STAGE_REASONS[phase], message, generation
    )
    return {"phase": phase, "message": message, "conditions": conds}


def final_body(
    conditions: list[dict[str, Any]],
    succeeded: bool,
    reason: str,
    message: str,
    generation: int,
    adapter_uri: str | None = None,
) -> dict[str, Any]:
    conds = set_condition(conditions, ConditionType.RUNNING, "False", reason, message, generation)
    if succeeded:
        conds = set_condition(conds, ConditionType.SUCCEEDED, "True", reason, message, generation)
    else:
        conds = set_condition(conds, ConditionType.FAILED, "True", reason, message, generation)
    body: dict[str, Any] = {
        "phase": "Succeeded" if succeeded else "Failed",
        "message": message,
        "conditions": conds,
        "completionTime": now_rfc3339(),
    }
    if adapter_uri:
        body["adapterUri"] = adapter_uri
    return body


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
    """Merge patches on the resource's /status through the kubernetes client."""

    def __init__(self, ref: ResourceRef, api: Any = None, clock: Any = time.monotonic) -> None:
        self.ref = ref
        self.clock = clock
        self.api = api if api is not None else _custom_objects_api()
        self.conditions: list[dict[str, Any]] = self._current_conditions()
        self.last_patch = float("-inf")
        self.pending: dict[str, Any] = {}
        self.eta = EtaClock()

    def _current_conditions(self) -> list[dict[str, Any]]:
        """Keep the operator's conditions (a merge patch replaces the whole list)."""
        try:
            obj = self.api.get_namespaced_custom_object_status(
                GROUP, VERSION, self.ref.namespace, PLURAL, self.ref.name
            )
        except Exception as err:  # best effort, logged: the status is a view
            log.warning("cannot read the resource's status (%s); starting from none", err)
            return []
        return list((obj.get("status") or {}).get("conditions") or [])

    def _patch(self, body: dict[str, Any], force: bool) -> None:
        self.pending = _merge(self.pending, body)
        if not force and self.clock() - self.last_patch < MIN_PATCH_INTERVAL_S:
            return
        body, self.pending = finite_json(self.pending), {}
        body.setdefault("observedGeneration", self.ref.generation)
        try:
            self.api.patch_namespaced_custom_object_status(
                GROUP, VERSION, self.ref.namespace, PLURAL, self.ref.name, {"status": body}
            )
            self.last_patch = self.clock()
        except Exception as err:  # logged: an unreachable API never fails training
            log.warning("status patch failed (%s); training goes on", err)
            self.pending = _merge(body, self.pending)  # retried with the next patch

    def stage(self, phase: str, message: str) -> None:
        super().stage(phase, message)
        body = stage_body(self.conditions, phase, message, self.ref.generation)
        self.conditions = body["conditions"]
        self._patch(body, force=True)

    def progress(
        self, step: int, total: int, loss: float, epoch: float, step_seconds: float
    ) -> None:
        self.eta.add(step, step_seconds)
        body = progress_body(step, total, self.eta.eta(step, total), round(epoch, 3))
        body = _merge(body, metrics_body(train_loss=round(loss, 5)))
        self._patch(body, force=step == total)

    def metrics(self, **values: Any) -> None:
        self._patch(metrics_body(**values), force=False)

    def dataset(self, summary: DatasetStatus) -> None:
        self._patch({"dataset": summary.to_dict()}, force=True)

    def finished(self, succeeded: bool, reason: str, message: str, adapter_uri: str | None) -> None:
        super().finished(succeeded, reason, message, adapter_uri)
        body = final_body(
            self.conditions, succeeded, reason, message, self.ref.generation, adapter_uri
        )
        self.conditions = body["conditions"]
        self._patch(body, force=True)


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """JSON-merge-patch semantics for building one patch out of several."""
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _custom_objects_api() -> Any:
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.CustomObjectsApi()
