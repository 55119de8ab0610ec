"""Server-side printing: the `meta.k8s.io/v1` Table that `kubectl get` asks for.

Custom kinds get their CRD's `additionalPrinterColumns` (simple `.a.b.c` JSON paths, `date`
columns rendered as an age like the API server does); built-in kinds the columns kube-apiserver
prints for them (`PRINTERS`; Events: Last Seen, Type, Reason, Object, Message); any other kind
Name and Age.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
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


Obj = dict[str, Any]
# A kind's columns after Name (Age last unless the kind has its own), and how to fill them.
Printer = tuple[list[dict[str, Any]], Callable[[Obj], list[Any]]]


def _count(*values: Any) -> int:
    return sum(len(v) for v in values if isinstance(v, dict | list))


def _pod_cells(pod: Obj) -> list[Any]:
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


def _job_cells(job: Obj) -> list[Any]:
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


def _event_cells(event: Obj) -> list[Any]:
    """core/v1 and events.k8s.io/v1 Events alike (the latter says regarding and note)."""
    target = event.get("involvedObject") or event.get("regarding") or {}
    series = event.get("series") or {}
    last = (
        event.get("lastTimestamp")
        or series.get("lastObservedTime")
        or event.get("eventTime")
        or event.get("deprecatedLastTimestamp")
        or (event.get("metadata") or {}).get("creationTimestamp")
    )
    return [
        human_age(_seconds(last)),
        event.get("type"),
        event.get("reason"),
        f"{str(target.get('kind', '')).lower()}/{target.get('name', '')}",
        event.get("message") or event.get("note"),
    ]


def _seconds(stamp: str | None) -> str | None:
    """MicroTime (2026-12-01T10:00:00.123456Z) to the seconds human_age parses."""
    return stamp.split(".")[0].rstrip("Z") + "Z" if stamp else None


def _binding_cells(binding: Obj) -> list[Any]:
    ref = binding.get("roleRef") or {}
    return [f"{ref.get('kind')}/{ref.get('name')}"]


def _service_cells(service: Obj) -> list[Any]:
    spec = service.get("spec") or {}
    ports = ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in spec.get("ports") or [])
    return [
        spec.get("type", "ClusterIP"),
        spec.get("clusterIP", "None"),
        "<none>",
        ports or "<none>",
    ]


def _deployment_cells(deployment: Obj) -> list[Any]:
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    wanted = spec.get("replicas", 1)
    return [
        f"{status.get('readyReplicas', 0)}/{wanted}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
    ]


def _created_at(obj: Obj) -> list[Any]:
    return [(obj.get("metadata") or {}).get("creationTimestamp")]


_AGE = _col("Age", "date")
_CREATED = [_col("Created At", "date")]
PRINTERS: dict[tuple[str, str], Printer] = {
    ("", "Namespace"): ([_col("Status"), _AGE], lambda o: [(o.get("status") or {}).get("phase")]),
    ("", "Pod"): ([_col("Ready"), _col("Status"), _col("Restarts", "integer"), _AGE], _pod_cells),
    ("batch", "Job"): ([_col("Status"), _col("Completions"), _col("Duration"), _AGE], _job_cells),
    ("", "Secret"): (
        [_col("Type"), _col("Data", "integer"), _AGE],
        lambda o: [o.get("type", "Opaque"), _count(o.get("data"))],
    ),
    ("", "ConfigMap"): (
        [_col("Data", "integer"), _AGE],
        lambda o: [_count(o.get("data"), o.get("binaryData"))],
    ),
    ("", "ServiceAccount"): (
        [_col("Secrets", "integer"), _AGE],
        lambda o: [_count(o.get("secrets"))],
    ),
    ("", "Service"): (
        [_col("Type"), _col("Cluster-IP"), _col("External-IP"), _col("Port(s)"), _AGE],
        _service_cells,
    ),
    ("apps", "Deployment"): (
        [_col("Ready"), _col("Up-to-date", "integer"), _col("Available", "integer"), _AGE],
        _deployment_cells,
    ),
    ("rbac.authorization.k8s.io", "Role"): (_CREATED, _created_at),
    ("rbac.authorization.k8s.io", "ClusterRole"): (_CREATED, _created_at),
    ("rbac.authorization.k8s.io", "RoleBinding"): ([_col("Role"), _AGE], _binding_cells),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): ([_col("Role"), _AGE], _binding_cells),
    ("coordination.k8s.io", "Lease"): (
        [_col("Holder"), _AGE],
        lambda o: [(o.get("spec") or {}).get("holderIdentity")],
    ),
    ("apiextensions.k8s.io", "CustomResourceDefinition"): (_CREATED, _created_at),
}
_EVENT_COLUMNS = [
    _col("Last Seen"),
    _col("Type"),
    _col("Reason"),
    _col("Object"),
    _col("Message"),
    _col("Name", priority=1, fmt="name"),  # kubectl get events -o wide
]
_EVENTS = {("", "Event"), ("events.k8s.io", "Event")}


def columns(rt: ResourceType) -> list[dict[str, Any]]:
    name = _col("Name", fmt="name")
    if rt.printer_columns:
        extra = [
            _col(c["name"], c.get("type", "string"), c.get("priority", 0), c.get("format", ""))
            for c in rt.printer_columns
        ]
        return [name, *extra] if any(c["name"] == "Age" for c in extra) else [name, *extra, _AGE]
    if (rt.group, rt.kind) in _EVENTS:
        return _EVENT_COLUMNS
    printer = PRINTERS.get((rt.group, rt.kind))
    return [name, *(printer[0] if printer else [_AGE])]


def cells(rt: ResourceType, obj: Obj) -> list[Any]:
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
    if (rt.group, rt.kind) in _EVENTS:
        return [*_event_cells(obj), meta.get("name")]
    printer = PRINTERS.get((rt.group, rt.kind))
    if printer is None:
        return [meta.get("name"), age]
    fields, fill = printer
    values = fill(obj)
    return [meta.get("name"), *values, *([age] if fields[-1] is _AGE else [])]


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
