"""Kubernetes Events about a resource, through the events API (events.k8s.io/v1), deduplicated
as client-go's event recorder (k8s.io/client-go/tools/events) does.

The resource is the Event's `regarding` object, so `kubectl describe wft NAME` and
`kubectl events --for wft/NAME` list them, and event-based alerting sees them. An Event that
repeats one recorded less than 6 minutes before (same resource, type, reason, action and note)
is not posted again: the first one's `series` counts it (`count`, `lastObservedTime`), so a
resync or a replayed watch event never multiplies Events. Posting is best effort: a failed
post is logged, never raised (an Event is a notice, the status is the record).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .kube import ApiError, Kube
from .status import Event

LOG = logging.getLogger("wft_operator")

REPORTING_CONTROLLER = "wft.dev/operator"
# client-go's series window: an isomorphic Event after this long starts a new Event.
SERIES_WINDOW_S = 6 * 60.0
MAX_NOTE_BYTES = 1024  # events.k8s.io/v1 refuses a longer note


@dataclass
class _Seen:
    namespace: str
    name: str
    count: int
    last: float


def micro_time(seconds: float) -> str:
    """metav1.MicroTime: RFC 3339 with microseconds."""
    stamp = dt.datetime.fromtimestamp(seconds, dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _note(text: str) -> str:
    data = text.encode()
    return (
        text
        if len(data) <= MAX_NOTE_BYTES
        else data[: MAX_NOTE_BYTES - 3].decode(errors="ignore") + "..."
    )


def regarding(resource: Mapping[str, Any]) -> dict[str, Any]:
    meta = resource["metadata"]
    ref = {
        "apiVersion": resource.get("apiVersion"),
        "kind": resource.get("kind"),
        "namespace": meta.get("namespace"),
        "name": meta.get("name"),
        "uid": meta.get("uid"),
        "resourceVersion": meta.get("resourceVersion"),
    }
    return {k: v for k, v in ref.items() if v}


def event_body(
    resource: Mapping[str, Any], event: Event, now: float, instance: str
) -> dict[str, Any]:
    """A new events.k8s.io/v1 Event regarding `resource`, named as client-go names them."""
    meta = resource["metadata"]
    return {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {
            "name": f"{meta['name']}.{time.time_ns():x}",
            "namespace": meta["namespace"],
        },
        "eventTime": micro_time(now),
        "reportingController": REPORTING_CONTROLLER,
        "reportingInstance": instance,
        "action": event.action,
        "reason": event.reason,
        "note": _note(event.message),
        "type": event.type,
        "regarding": regarding(resource),
    }


class EventRecorder:
    """Posts Events; thread-safe (the handler pool and the resync thread both record)."""

    def __init__(
        self,
        kube: Kube,
        instance: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kube = kube
        self.instance = (instance or os.environ.get("POD_NAME") or socket.gethostname())[:128]
        self.clock = clock
        self._seen: dict[tuple[str, ...], _Seen] = {}
        self._lock = threading.Lock()

    def record(self, resource: Mapping[str, Any], event: Event) -> None:
        try:
            self._record(resource, event)
        except ApiError as err:
            meta = resource.get("metadata") or {}
            LOG.warning(
                "Event %s for %s/%s not posted: %s",
                event.reason,
                meta.get("namespace"),
                meta.get("name"),
                err,
            )

    def _record(self, resource: Mapping[str, Any], event: Event) -> None:
        meta = resource["metadata"]
        key = (str(meta.get("uid")), event.type, event.reason, event.action, _note(event.message))
        now = self.clock()
        with self._lock:
            self._forget_older_than(now - SERIES_WINDOW_S)
            seen = self._seen.get(key)
            if seen is not None:
                seen.count += 1
                seen.last = now
                count = seen.count
        if seen is not None:
            series = {"series": {"count": count, "lastObservedTime": micro_time(now)}}
            try:
                self.kube.patch("Event", seen.namespace, seen.name, series)
                return
            except ApiError as err:
                if err.code != 404:
                    raise
                # Removed meanwhile (events expire after an hour): a new one, as client-go.
        created = self.kube.create(event_body(resource, event, now, self.instance))
        with self._lock:
            self._seen[key] = _Seen(meta["namespace"], created["metadata"]["name"], 1, now)

    def _forget_older_than(self, cutoff: float) -> None:
        for key in [k for k, seen in self._seen.items() if seen.last < cutoff]:
            del self._seen[key]
