"""The trainer's first stage: S3 audio and transcripts to Whisper features on local disk.

`prepare(config, processor, work_dir, store)` is the entry point (also `wft prepare`); see
`pipeline.py` for the stages and `docs/data.md` for the formats and the report. One idea per
module: formats (layouts), audio (decode to 16 kHz mono), normalize (transcripts), features
(log-mel in worker processes), writer (Arrow shards), report, samples (skip reasons).
"""

from .pipeline import PreparedData, fetch_prepared, prepare
from .report import DataStageFailure, PrepareReport
from .samples import Skip

__all__ = ["DataStageFailure", "PrepareReport", "PreparedData", "Skip", "fetch_prepared", "prepare"]
