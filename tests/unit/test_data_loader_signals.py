"""The GPU path's DataLoader workers and SIGTERM.

`timeout`, a shell, or an init that forwards signals sends SIGTERM to the whole process group.
The trainer answers it by finishing the step and checkpointing (tests/integration/
test_trainer_resume.py); a worker that died of the same signal would fail that step first, and
the run would end as a trainer error instead of a preemption (seen on the H100, run 13).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from typing import Any

import numpy as np
from wft_trainer.batching import make_loader


def _stack(rows: Any) -> np.ndarray:
    return np.stack(rows)


def test_workers_outlive_a_sigterm_sent_to_the_process_group() -> None:
    rows = [np.full(4, i) for i in range(64)]
    batches = [list(range(i, i + 4)) for i in range(0, 64, 4)]
    loader = make_loader(rows, batches, _stack, cuda=False, workers=2)
    seen = []
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)  # this process plays the trainer
    try:
        for n, batch in enumerate(loader):
            seen.append(int(batch[0][0]))
            if n == 1:
                workers = multiprocessing.active_children()
                assert workers, "the loader should have started worker processes"
                for worker in workers:
                    os.kill(worker.pid, signal.SIGTERM)  # type: ignore[arg-type]
                time.sleep(0.5)
                assert all(w.is_alive() for w in workers)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert seen == list(range(0, 64, 4))  # every batch arrived, in order
