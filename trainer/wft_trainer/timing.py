"""When the trainer's process started, so that a Job's time to its first step counts the
interpreter's start and the imports before the pipeline runs (torch and transformers alone
take seconds), not only what the pipeline times itself.

`python -m wft_trainer` marks it (`mark_process_start`); an in-process caller (`wft train`, the
tests) does not, and its timings start with the pipeline as before.
"""

from __future__ import annotations

import os
import time

_started: float | None = None


def process_age_seconds() -> float:
    """Seconds since this process was created (Linux: /proc), 0 where that cannot be read."""
    try:
        with open("/proc/self/stat") as f:
            # Field 22, start time in clock ticks since boot; the command name before it may
            # hold spaces, so count from the last ')'.
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def mark_process_start() -> None:
    global _started
    _started = time.monotonic() - process_age_seconds()


def process_started() -> float | None:
    """The process's start on time.monotonic()'s clock, or None when nobody marked it."""
    return _started
