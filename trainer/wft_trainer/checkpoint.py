"""Resumable checkpoints under `<run_output_uri>checkpoints/step-<N>/` in S3.

A checkpoint holds the adapter weights, the optimizer and scheduler states, every RNG state and
the data position (micro-batches consumed), plus what earlier stages measured (baseline WER,
loss curve) so that a resumed run does not redo them. `checkpoints/latest.json` is written after
the folder is complete: a reader that finds it never takes a half-uploaded checkpoint.

A checkpoint upload that fails (S3 away for a while, 5xx) is retried as a whole with backoff, on
top of botocore's own per-request retries; should it still fail, that checkpoint is skipped
with a warning (logged, and through `on_warning` in the resource's status message) and training
goes on: a retry of the Job would resume from the previous one. Only the final upload of the
results must succeed (`output.publish` retries it the same way, then fails the attempt). Access
denied and a missing bucket are not retried: the final upload would meet them too.

Only the newest checkpoint is kept: once `latest.json` points at a new one, the older folders are
deleted (a LoRA checkpoint of large-v3 with its optimizer state is about 0.7 GB), and the local
staging copy goes too, so neither the bucket nor the pod's disk fills up over a long run. When the
run has succeeded, the whole `checkpoints/` folder is removed: the adapter is the result. Deleting
needs `s3:DeleteObject`; without it the trainer logs a warning once and keeps going.
"""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from wft_api.conditions import Reason

from .errors import TrainerFailure

log = logging.getLogger(__name__)
T = TypeVar("T")

# A whole checkpoint upload is tried this often, waiting 5, 10, 20 s in between (botocore
# retries each request besides, for up to about a minute): an S3 outage of a minute or two
# costs a delay, not the checkpoint; a longer one costs the checkpoint, never the run.
UPLOAD_ATTEMPTS = 4
UPLOAD_RETRY_DELAY_S = 5.0
# What no retry fixes: the final upload would fail the same way, so the run fails now.
NOT_RETRIED = frozenset({Reason.S3_ACCESS_DENIED, Reason.S3_NOT_FOUND})


def with_retries(
    fn: Callable[[], T],
    what: str,
    attempts: int | None = None,
    delay: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`fn()`, tried `attempts` times with doubling pauses; the last failure is raised."""
    attempts = attempts or UPLOAD_ATTEMPTS
    pause = UPLOAD_RETRY_DELAY_S if delay is None else delay
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except TrainerFailure as err:
            if err.reason in NOT_RETRIED or attempt == attempts:
                raise
            log.warning(
                "%s failed (attempt %d of %d: %s); trying again in %.0f s",
                what,
                attempt,
                attempts,
                err.message,
                pause,
            )
            sleep(pause)
            pause *= 2
    raise AssertionError("unreachable")


STATE_FILE = "trainer_state.pt"
LATEST = "latest.json"
STEP_FOLDER = re.compile(r"step-(\d+)/")
META_FILE = "meta.json"


@dataclass
class Checkpoint:
    step: int
    local_dir: Path
    meta: dict[str, Any]

    def state(self) -> dict[str, Any]:
        # weights_only=False: the state holds numpy RNG tuples; the file is our own.
        return torch.load(self.local_dir / STATE_FILE, map_location="cpu", weights_only=False)  # type: ignore[no-any-return]


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class CheckpointStore:
    """Checkpoints of one run (one resource generation) in S3, staged through a local folder.

    Each checkpoint records `spec_hash` (wft_api.identity: the spec fields that shape training)
    in its `meta.json` and in `latest.json`; `latest()` never hands out one made by another
    spec (or by a trainer that recorded none): it is removed and the run starts at step 0.
    """

    def __init__(
        self,
        store: Any,
        run_uri: str,
        local_root: Path,
        spec_hash: str | None = None,
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.uri = run_uri.rstrip("/") + "/checkpoints/"
        self.local_root = local_root
        self.spec_hash = spec_hash
        self.on_warning = on_warning
        self.cleanup_denied = False  # warned once; later checkpoints do not try again
        self.saved: int | None = None  # the step of the newest checkpoint in S3 (this run's)
        self.skipped: list[int] = []

    def save(
        self, step: int, model: Any, state: dict[str, Any], meta: dict[str, Any]
    ) -> str | None:
        """Write the checkpoint of `step`; its URI, or None when S3 would not take it (then
        a warning says so and training goes on)."""
        local = self.local_root / f"step-{step}"
        local.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(str(local))  # adapter only: a PeftModel saves its LoRA weights
        torch.save(state, local / STATE_FILE)
        record = {"step": step, "specHash": self.spec_hash}
        (local / META_FILE).write_text(json.dumps({**meta, **record}, indent=2))
        uri = f"{self.uri}step-{step}/"

        def upload() -> None:
            self.store.upload_dir(local, uri)
            self.store.put_json(f"{self.uri}{LATEST}", {**record, "uri": uri})

        try:
            with_retries(upload, f"uploading the checkpoint at step {step}")
        except TrainerFailure as err:
            shutil.rmtree(local, ignore_errors=True)
            if err.reason in NOT_RETRIED:
                raise
            self.skipped.append(step)
            before = f"step {self.saved}" if self.saved else "the last checkpoint, if any"
            message = (
                f"checkpoint at step {step} not saved, S3 would not take it ({err.message}); "
                f"training goes on (a retried attempt would resume from {before})"
            )
            log.warning("%s", message)
            if self.on_warning is not None:
                self.on_warning(message)
            return None
        log.info("checkpoint at step %d saved to %s", step, uri)
        self.saved = step
        shutil.rmtree(local, ignore_errors=True)  # it is in S3 now; the pod's disk is small
        self._delete(self.older_than(step))
        return uri

    def older_than(self, step: int) -> list[str]:
        """URIs of the checkpoint folders before `step` (left by earlier saves or attempts)."""
        steps = {
            int(m.group(1))
            for obj in self.store.list(self.uri)
            if (m := STEP_FOLDER.match(obj.key.rpartition("/checkpoints/")[2]))
        }
        return [f"{self.uri}step-{s}/" for s in sorted(steps) if s < step]

    def clear(self) -> None:
        """After success: the pointer first (no reader follows it into a deleted folder)."""
        self._delete([f"{self.uri}{LATEST}", self.uri])

    def _delete(self, prefixes: list[str]) -> None:
        if self.cleanup_denied or not prefixes:
            return
        try:
            for prefix in prefixes:
                self.store.delete_prefix(prefix)
        except TrainerFailure as err:
            # Denied: warned once, never tried again. Anything else (S3 away): the next
            # checkpoint deletes what this one could not.
            self.cleanup_denied = err.reason == Reason.S3_ACCESS_DENIED
            log.warning("old checkpoints stay in S3: %s", err.message)

    def latest(self) -> Checkpoint | None:
        marker = f"{self.uri}{LATEST}"
        if not self.store.exists(marker):
            return None
        pointer = json.loads(self.store.read_bytes(marker))
        step = int(pointer["step"])
        if pointer.get("specHash") != self.spec_hash:
            made_by = pointer.get("specHash") or "a spec it did not record"
            log.warning(
                "the checkpoint at step %d in %s was made by another spec (%s; this one is %s): "
                "not resumed, training starts at step 0",
                step,
                self.uri,
                made_by,
                self.spec_hash,
            )
            self._delete([f"{self.uri}{LATEST}", self.uri])
            return None
        local = self.local_root / f"resume-{step}"
        self.store.download_prefix(pointer["uri"], local)
        meta = json.loads((local / META_FILE).read_text())
        log.info("resuming from the checkpoint at step %d (%s)", step, pointer["uri"])
        self.saved = step
        return Checkpoint(step=step, local_dir=local, meta=meta)


def load_adapter_weights(model: Any, folder: Path) -> None:
    """Put a saved adapter's weights into the live PEFT model (same LoRA config)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = load_file(str(folder / "adapter_model.safetensors"))
    result = set_peft_model_state_dict(model, weights)
    missing = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    if missing:
        raise RuntimeError(f"checkpoint adapter does not match the model: {missing[:3]}")
