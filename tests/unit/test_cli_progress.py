"""`wft train`'s progress bar: steps in order fill one bar; a run that starts over (batchSize
auto backed off, so the total changes) gets a fresh bar rather than one past 100%."""

from __future__ import annotations

import pytest
from wft_cli.commands.train import BarReporter


def test_a_restarted_run_gets_a_fresh_bar(capsys: pytest.CaptureFixture[str]) -> None:
    bar = BarReporter()
    for step in (1, 2, 3):
        bar.progress(step, 4, 1.0, 0.1 * step, 1.0)
    assert (bar.bar.n, bar.bar.total) == (3, 4)
    bar.progress(1, 8, 1.0, 0.05, 1.0)  # the same data at half the batch: twice the steps
    assert (bar.bar.n, bar.bar.total) == (1, 8)
    bar.progress(2, 8, 0.9, 0.1, 1.0)
    assert bar.bar.n == 2
    bar.close()
    assert "training" in capsys.readouterr().err
