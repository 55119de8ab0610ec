"""Status patches as data: stage changes go out at once, progress at most every 10 s, an
unreachable API never raises. The API object is a recorder (no Kubernetes API runs in unit
tests); against the embedded API, the trainer's patches run in tests/integration/test_demo.py."""

from __future__ import annotations

from typing import Any

from wft_api.v1alpha1 import ResourceRef
from wft_trainer.status import EtaClock, KubeStatusReporter


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.patches: list[dict[str, Any]] = []
        self.fail = fail

    def get_namespaced_custom_object_status(self, *a: Any) -> dict[str, Any]:
        return {
            "status": {
                "conditions": [
                    {
                        "type": "Accepted",
                        "status": "True",
                        "reason": "SpecValid",
                        "message": "",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    }
                ]
            }
        }

    def patch_namespaced_custom_object_status(self, *a: Any) -> None:
        if self.fail:
            raise ConnectionError("API unreachable")
        self.patches.append(a[-1]["status"])


def test_throttles_progress_keeps_conditions_and_survives_outage() -> None:
    now = [0.0]
    api = Recorder()
    rep = KubeStatusReporter(ResourceRef(name="x", generation=3), api=api, clock=lambda: now[0])
    rep.stage("Training", "go")
    for step in range(1, 6):
        now[0] += 1.0
        rep.progress(step, 100, 2.0 - step / 10, step / 10, 1.0)
    assert len(api.patches) == 1  # the stage patch; progress within 10 s is held back
    now[0] += 10.0
    rep.progress(6, 100, 1.4, 0.6, 1.0)
    last = api.patches[-1]
    assert last["progress"]["step"] == 6 and last["progress"]["percent"] == 6.0
    assert last["progress"]["etaSeconds"] == 94 and last["metrics"]["trainLoss"] == 1.4
    types = {c["type"] for c in api.patches[0]["conditions"]}
    assert types == {"Accepted", "Running"} and api.patches[0]["observedGeneration"] == 3

    api.fail = True
    rep.finished(False, "CudaOutOfMemory", "CUDA out of memory at batch size 64", None)  # no raise
    api.fail = False
    rep.finished(True, "Completed", "done", "s3://b/o/")
    final = api.patches[-1]
    assert final["phase"] == "Succeeded" and final["adapterUri"] == "s3://b/o/"
    assert {c["type"]: c["status"] for c in final["conditions"]}["Running"] == "False"


def test_eta_forgets_the_pace_of_an_attempt_that_started_over() -> None:
    clock = EtaClock()
    for step in range(1, 6):
        clock.add(step, 1.0)
    assert clock.eta(5, 10) == 5
    clock.add(1, 30.0)  # batchSize auto backed off: step 1 again, compiling
    clock.add(2, 3.0)
    assert clock.eta(2, 10) == 24  # 8 steps at the new 3 s, not a mix with the old 1 s
