"""The trainer's report as data: it writes `status.trainer` and nothing else, replaces the whole
report on each write, names its run and attempt, stops when a newer run reports, sends stage
changes at once and progress at most every 10 s, and never raises for an unreachable API. The
API object is a recorder that applies merge patches as the API server does (no Kubernetes API
runs in unit tests); against the embedded API, the trainer's reports run in
tests/integration/test_demo.py and tests/integration/test_operator.py."""

from __future__ import annotations

import copy
from typing import Any

from wft_api.v1alpha1 import DatasetStatus, ResourceRef, WhisperFineTuneStatus
from wft_trainer.status import EtaClock, KubeStatusReporter, report_body

OPERATORS = {
    "phase": "Pending",
    "message": "waiting",
    "observedGeneration": 3,
    "conditions": [
        {
            "type": "Accepted",
            "status": "True",
            "reason": "SpecValid",
            "message": "",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }
    ],
}


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge(out.get(key), value)
    return out


class Recorder:
    """The resource's /status: GET and merge-PATCH, each patch kept."""

    def __init__(self, status: dict[str, Any] | None = None) -> None:
        self.status = copy.deepcopy(status if status is not None else OPERATORS)
        self.patches: list[dict[str, Any]] = []
        self.fail = False

    def get_namespaced_custom_object_status(self, *a: Any) -> dict[str, Any]:
        if self.fail:
            raise ConnectionError("API unreachable")
        return {"status": copy.deepcopy(self.status)}

    def patch_namespaced_custom_object_status(self, *a: Any) -> None:
        if self.fail:
            raise ConnectionError("API unreachable")
        body = a[-1]
        assert set(body) == {"status"} and set(body["status"]) == {"trainer"}, body
        self.patches.append(body["status"]["trainer"])
        self.status = merge(self.status, body["status"])
        WhisperFineTuneStatus.model_validate(self.status)

    @property
    def trainer(self) -> dict[str, Any]:
        return dict(self.status.get("trainer") or {})


def reporter(api: Recorder, now: list[float], generation: int = 3) -> KubeStatusReporter:
    ref = ResourceRef(name="x", generation=generation)
    return KubeStatusReporter(ref, api=api, clock=lambda: now[0], pod="x-g3-abcde")


def test_throttles_progress_writes_only_its_field_and_survives_outage() -> None:
    now = [0.0]
    api = Recorder()
    rep = reporter(api, now)
    rep.stage("Training", "go")
    for step in range(1, 6):
        now[0] += 1.0
        rep.progress(step, 100, 2.0 - step / 10, step / 10, 1.0)
    assert len(api.patches) == 1  # the stage report; progress within 10 s is held back
    now[0] += 10.0
    rep.progress(6, 100, 1.4, 0.6, 1.0)
    trainer = api.trainer
    assert trainer["progress"]["step"] == 6 and trainer["progress"]["percent"] == 6.0
    assert trainer["progress"]["etaSeconds"] == 94 and trainer["metrics"]["trainLoss"] == 1.4
    assert (trainer["stage"], trainer["message"]) == ("Training", "go")
    assert (trainer["generation"], trainer["pod"]) == (3, "x-g3-abcde")
    assert trainer["lastUpdateTime"].endswith("Z")
    assert {k: v for k, v in api.status.items() if k != "trainer"} == OPERATORS  # untouched

    api.fail = True
    rep.finished(False, "CudaOutOfMemory", "CUDA out of memory at batch size 64", None)  # no raise
    api.fail = False
    rep.finished(True, "Completed", "done", "s3://b/o/")
    trainer = api.trainer
    assert (trainer["stage"], trainer["adapterUri"]) == ("Succeeded", "s3://b/o/")


def test_the_first_report_replaces_what_an_earlier_run_left() -> None:
    earlier = {
        **OPERATORS,
        "trainer": {
            "generation": 2,
            "pod": "x-g2-zzzzz",
            "stage": "Succeeded",
            "adapterUri": "s3://b/generation-2/",
            "metrics": {"wer": 0.1, "baselineWer": 0.3},
            "dataset": {"samples": 9, "skippedReasons": {"too_long": 2}},
        },
    }
    api = Recorder(earlier)
    rep = reporter(api, [0.0])
    rep.stage("Preparing", "preparing s3://data/")
    assert api.trainer == {
        "generation": 3,
        "pod": "x-g3-abcde",
        "stage": "Preparing",
        "message": "preparing s3://data/",
        "lastUpdateTime": api.trainer["lastUpdateTime"],
    }
    rep.metrics(train_loss=1.0)
    rep.dataset(DatasetStatus(samples=4))
    assert api.trainer["dataset"] == {
        "samples": 4,
        "evalSamples": 0,
        "skipped": 0,
        "skippedReasons": {},
        "hours": 0.0,
        "warnings": {},
    }
    assert api.trainer["metrics"] == {"trainLoss": 1.0}


def test_a_run_superseded_by_a_newer_one_stops_reporting() -> None:
    newer = {**OPERATORS, "trainer": {"generation": 4, "pod": "x-g4-q", "stage": "Training"}}
    api = Recorder(newer)
    rep = reporter(api, [0.0])
    rep.stage("Training", "resumed")
    rep.finished(False, "TrainerError", "SIGTERM", None)
    assert api.patches == [] and api.trainer["generation"] == 4


def test_report_body_nulls_every_key_the_report_lacks() -> None:
    current = {"stage": "Training", "metrics": {"wer": 0.2, "trainLoss": 1.0}, "pod": "old"}
    body = report_body(current, {"generation": 1, "metrics": {"trainLoss": 0.5}}, "T")
    assert body == {
        "status": {
            "trainer": {
                "stage": None,
                "pod": None,
                "generation": 1,
                "metrics": {"wer": None, "trainLoss": 0.5},
                "lastUpdateTime": "T",
            }
        }
    }


def test_eta_forgets_the_pace_of_an_attempt_that_started_over() -> None:
    clock = EtaClock()
    for step in range(1, 6):
        clock.add(step, 1.0)
    assert clock.eta(5, 10) == 5
    clock.add(1, 30.0)  # batchSize auto backed off: step 1 again, compiling
    clock.add(2, 3.0)
    assert clock.eta(2, 10) == 24  # 8 steps at the new 3 s, not a mix with the old 1 s
