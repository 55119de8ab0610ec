"""Opt-in performance trace of a few training steps (WFT_PROFILE_STEPS, WFT_PROFILE_OUT)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)


class StepProfiler:
    """Opt-in performance trace: WFT_PROFILE_STEPS="6:9" profiles steps 6 to 8 with
    torch.profiler and writes the top operators by CPU and by CUDA time to WFT_PROFILE_OUT
    (a folder), named after the engine. Off unless the variable is set."""

    def __init__(self, engine: str) -> None:
        window = os.environ.get("WFT_PROFILE_STEPS", "")
        first, _, last = window.partition(":")
        self.window = (int(first), int(last)) if first.isdigit() and last.isdigit() else None
        self.out = Path(os.environ.get("WFT_PROFILE_OUT") or ".") / f"profile-{engine}.txt"
        self.prof: Any = None

    def before(self, step: int) -> None:
        if self.window and step == self.window[0]:
            activities = [torch.profiler.ProfilerActivity.CPU]
            if torch.cuda.is_available():
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self.prof = torch.profiler.profile(activities=activities)
            self.prof.__enter__()

    def after(self, step: int) -> None:
        if self.prof is None or not self.window or step != self.window[1] - 1:
            return
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.prof.__exit__(None, None, None)
        table = self.prof.key_averages()
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(
            table.table(sort_by="self_cpu_time_total", row_limit=40)
            + "\n\n"
            + table.table(sort_by="self_cuda_time_total", row_limit=40)
        )
        log.info("profile of steps %d-%d written to %s", *self.window, self.out)
        self.prof = None
