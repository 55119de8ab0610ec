"""Prometheus metrics of the operator (served on WFT_METRICS_PORT at /metrics)."""

from __future__ import annotations

import threading

from prometheus_client import Counter, Gauge, start_http_server
from wft_api.v1alpha1 import Phase

PHASES: tuple[str, ...] = Phase.__args__  # type: ignore[attr-defined]
NO_PHASE = "Unknown"  # a resource the operator has not written a status for yet

RESOURCES = Gauge("wft_resources", "WhisperFineTune resources by status.phase", ["phase"])
JOBS_CREATED = Counter("wft_jobs_created_total", "Trainer Jobs created by the operator")
RECONCILE_ERRORS = Counter(
    "wft_reconcile_errors_total", "Handler runs that ended in an error", ["handler", "kind"]
)


class PhaseCounts:
    """Phase of every known resource; the gauge is recomputed from it on each change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._phases: dict[tuple[str, str], str] = {}

    def set(self, namespace: str, name: str, phase: str | None) -> None:
        with self._lock:
            self._phases[(namespace, name)] = phase or NO_PHASE
            self._export()

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._phases.pop((namespace, name), None)
            self._export()

    def _export(self) -> None:
        counts = dict.fromkeys((*PHASES, NO_PHASE), 0)
        for phase in self._phases.values():
            counts[phase] = counts.get(phase, 0) + 1
        for phase, n in counts.items():
            RESOURCES.labels(phase=phase).set(n)


def serve(port: int, address: str = "0.0.0.0") -> None:
    """Start the /metrics endpoint in a background thread (port 0: not served)."""
    if port:
        start_http_server(port, addr=address)
