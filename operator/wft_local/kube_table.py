"""Server-side printing: the `meta.k8s.io/v1` Table that `kubectl get` asks for.

Custom kinds get their CRD's `additionalPrinterColumns` (simple `.a.b.c` JSON paths, `date`
columns rendered as an age like the API server does); Pods and Jobs get their usual columns;
everything else Name and Age.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from .kube_resources import ResourceType


def parse_time(value: str) -> dt.datetime:
    return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


def human_age(timestamp: str | None, now: dt.datetime | None = None) -> str | None:
    """`5s`, `3m10s`, `2h`, `4d`: the API server's `duration.HumanDuration`, slightly simplified."""
    if not timestamp:
        return None
    try:
        then = parse_time(timestamp)
    except ValueError:
        return timestamp
    seconds = int(((now or dt.datetime.now(dt.UTC)) - then).total_seconds())
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 48:
        return f"{hours}h"
    return f"{hours // 24}d"


def json_path(obj: Any, path: str) -> Any:
    node = obj
    for part in path.strip(".").split("."):
        if not part:
            continue
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _col(name: str, kind: str = "string", priority: int = 0, fmt: str = "") -> dict[str, Any]:
    return {"name": name, "type": kind, "format": fmt, "description": "", "priority": priority}


def _pod_cells(pod: dict[str, Any]) -> list[Any]:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    reason = status.get("phase", "Pending")
    for c in statuses:
        state = c.get("state") or {}
        if "terminated" in state:
            reason = state["terminated"].get("reason") or reason
        elif "waiting" in state:
            reason = state["waiting"].get("reason") or reason
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Terminating"
    restarts = sum(int(c.get("restartCount", 0)) for c in statuses)
    return [f"{ready}/{len(spec.get('containers') or [])}", reason, restarts]


def _job_cells(job: dict[str, Any]) -> list[Any]:
    spec, status = job.get("spec") or {}, job.get("status") or {}
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    state = "Running"
    for name in ("Complete", "Failed", "Suspended"):
        if conditions.get(name) == "True":
            state = name
    if conditions.get("FailureTarget") == "True":
        state = "FailureTarget"
    completions = f"{status.get('succeeded', 0)}/{spec.get('completions', 1)}"
    duration = None
    if status.get("startTime"):
        end = status.get("completionTime")
        now = parse_time(end) if end else None
        duration = human_age(status["startTime"], now)
    return [state, completions, duration]


def columns(rt: ResourceType) -> list[dict[str, Any]]:
    name = _col("Name", fmt="name")
    age = _col("Age", "date")
    if rt.printer_columns:
        extra = [
            _col(c["name"], c.get("type", "string"), c.get("priority", 0), c.get("format", ""))
            for c in rt.printer_columns
        ]
        return [name, *extra] if any(c["name"] == "Age" for c in extra) else [name, *extra, age]
    if rt.kind == "Pod" and not rt.group:
        return [name, _col("Ready"), _col("Status"), _col("Restarts", "integer"), age]
    if rt.kind == "Job":
        return [name, _col("Status"), _col("Completions"), _col("Duration"), age]
    return [name, age]


def cells(rt: ResourceType, obj: dict[str, Any]) -> list[Any]:
    meta = obj.get("metadata") or {}
    age = human_age(meta.get("creationTimestamp"))
    if rt.printer_columns:
        row: list[Any] = [meta.get("name")]
        for c in rt.printer_columns:
            value = json_path(obj, c["jsonPath"])
            row.append(human_age(value) if c.get("type") == "date" and value else value)
        if not any(c["name"] == "Age" for c in rt.printer_columns):
            row.append(age)
        return row
    if rt.kind == "Pod" and not rt.group:
        return [meta.get("name"), *_pod_cells(obj), age]
    if rt.kind == "Job":
        return [meta.get("name"), *_job_cells(obj), age]
    return [meta.get("name"), age]


def table(
    rt: ResourceType, objs: list[dict[str, Any]], resource_version: str, include: str
) -> dict[str, Any]:
    rows = []
    for obj in objs:
        if include == "None":
            embedded = None
        elif include == "Object":
            embedded = obj
        else:
            embedded = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata", {}),
            }
        rows.append({"cells": cells(rt, obj), "object": embedded})
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": columns(rt),
        "rows": rows,
    }
