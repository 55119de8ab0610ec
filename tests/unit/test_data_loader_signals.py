"""The GPU path's DataLoader workers, SIGTERM, and exit.

`timeout`, a shell, or an init that forwards signals sends SIGTERM to the whole process group.
The trainer answers it by finishing the step and checkpointing (tests/integration/
test_trainer_resume.py); a worker that died of the same signal would fail that step first, and
the run would end as a trainer error instead of a preemption (seen on the H100, run 13). And a
trainer that fails mid-epoch must still exit: with workers that ignored SIGTERM it hung at exit
(seen on the H100 in session 4's first run).

Each case runs in a child process with a session (process group) of its own, so the group-wide
signal reaches neither pytest nor whatever runs it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

_PRELUDE = """
import multiprocessing, os, signal, sys, time
import numpy as np
from wft_trainer.batching import make_loader

def stack(rows):
    return np.stack(rows)

rows = [np.full(4, i) for i in range(64)]
batches = [list(range(i, i + 4)) for i in range(0, 64, 4)]
loader = make_loader(rows, batches, stack, cuda=False, workers=2)
"""


def _run(body: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", _PRELUDE + textwrap.dedent(body)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        start_new_session=True,
    )
    return proc, time.monotonic() - t0


def test_workers_outlive_a_sigterm_sent_to_the_process_group() -> None:
    proc, _ = _run(
        """
        stopped = []
        signal.signal(signal.SIGTERM, lambda *_: stopped.append(1))  # the trainer defers it
        seen = []
        for n, batch in enumerate(loader):
            seen.append(int(batch[0][0]))
            if n == 1:
                workers = multiprocessing.active_children()
                assert workers, "the loader should have started worker processes"
                os.killpg(os.getpgrp(), signal.SIGTERM)
                time.sleep(0.5)
                assert all(w.is_alive() for w in workers), "a worker died of the group's SIGTERM"
        assert stopped == [1], "the trainer itself should have got the signal"
        assert seen == list(range(0, 64, 4)), seen  # every batch arrived, in order
        print("ok")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_a_trainer_that_fails_mid_epoch_exits_promptly() -> None:
    # The iterator is still alive at exit, as when a failed step's traceback holds it.
    proc, seconds = _run(
        """
        batches_left = iter(loader)
        next(batches_left), next(batches_left)
        sys.exit(3)
        """
    )
    assert proc.returncode == 3, proc.stderr
    assert seconds < 30  # it hung until killed when the workers ignored SIGTERM
