"""What makes a training run the same run: the resource's incarnation, its generation, and a
digest of the spec fields that shape what is trained.

- `run_output_uri` (v1alpha1) keys the run folder by the resource's uid and generation: a
  resource deleted and created again under the same name has a new uid, so it never finds the
  earlier one's checkpoints or results.
- `spec_hash` is a digest of the spec without the run-neutral fields: those change how the Job
  is run (paused, how long, how often retried, kept for how long, which queue), never what it
  computes. The operator labels each Job with it (a spec change that leaves it equal patches the
  Job instead of replacing it), and the trainer records it in each checkpoint and in `_SUCCESS`:
  a checkpoint is never resumed by a different spec.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .v1alpha1 import WhisperFineTuneSpec

# camelCase spec fields that a running Job takes in place (or that leave it be); see
# docs/operator.md, "Run-neutral fields".
RUN_NEUTRAL_FIELDS = (
    "suspend",
    "activeDeadlineSeconds",
    "backoffLimit",
    "ttlSecondsAfterFinished",
    "queueName",
)


def spec_hash(spec: WhisperFineTuneSpec) -> str:
    """A 16-hex-digit digest of the spec minus RUN_NEUTRAL_FIELDS: equal digests, same run.

    Fields left at their defaults are left out, so that spelling a default out (or a newer
    model adding a defaulted field) does not make the same spec look like another one.
    """
    data: dict[str, Any] = spec.model_dump(by_alias=True, exclude_defaults=True, mode="json")
    for key in RUN_NEUTRAL_FIELDS:
        data.pop(key, None)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
