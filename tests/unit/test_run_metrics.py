"""metrics.json is `RunMetrics`: what real runs wrote reads into the model, and the model writes
it back key for key, so stored results, docs/benchmarks.md and the GPU benchmarks keep working.

The files are the GPU runs' results kept in docs/gpu-runs (each holds the metrics.json of its
runs); `tests/integration/test_trainer_e2e.py` checks the same of a fresh CPU run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from wft_trainer.results import RunMetrics

GPU_RUNS = Path(__file__).resolve().parents[2] / "docs" / "gpu-runs"


def stored_metrics() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(GPU_RUNS.glob("*-results.json")):
        runs = json.loads(path.read_text()).get("runs")
        for name, run in (runs or {}).items() if isinstance(runs, dict) else []:
            metrics = run.get("metrics") if isinstance(run, dict) else None
            if metrics and "lossCurve" in metrics:
                found.append((f"{path.name}:{name}", metrics))
    return found


STORED = stored_metrics()


@pytest.mark.parametrize(("run", "metrics"), STORED, ids=[run for run, _ in STORED])
def test_every_stored_metrics_json_reads_into_the_model(run: str, metrics: dict[str, Any]) -> None:
    model = RunMetrics.model_validate(metrics)
    assert (
        model.steps == metrics["steps"] and model.loss_curve[-1][1] == metrics["lossCurve"][-1][1]
    )


def test_todays_metrics_json_is_written_back_key_for_key() -> None:
    # Runs of today's trainer record who they are ("run"); earlier ones lack keys added since.
    current = [(run, m) for run, m in STORED if "run" in m]
    assert len(current) >= 2, "docs/gpu-runs holds no metrics.json of today's trainer"
    for run, metrics in current:
        written = RunMetrics.model_validate(metrics).to_json()
        assert json.loads(written) == metrics, run
        assert list(json.loads(written)) == list(metrics), run  # in the same order, too
