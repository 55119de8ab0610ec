"""What one candidate sample is, and how skipped ones are counted.

A run never fails for one bad file, and never hides one either: every sample that does not make
it into the dataset is counted under exactly one of the reasons below and named in the report
(every file, up to MAX_LISTED; a few of each reason are also kept as examples for messages).
Warnings (`script_mismatch` when spec.dataset.scriptMismatch is `warn`) are counted the same
way in a second log, for samples that are kept.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


class Skip:
    """Skip reasons: the keys of the report's `skippedReasons`."""

    UNDECODABLE_AUDIO = "undecodable_audio"  # corrupt, truncated, empty, or not audio at all
    NON_FINITE_AUDIO = "non_finite_audio"  # NaN or infinite samples (a float file)
    AMPLITUDE_OUT_OF_RANGE = "amplitude_out_of_range"  # float samples far beyond full scale
    MISSING_AUDIO = "missing_audio"  # the transcript names audio that is not there
    EMPTY_TRANSCRIPT = "empty_transcript"  # nothing left after normalization
    MISSING_TRANSCRIPT = "missing_transcript"  # audio with no transcript
    UNDECODABLE_TEXT = "undecodable_text"  # transcript is not UTF-8
    TOO_SHORT = "too_short"  # under spec.dataset.minDurationSeconds
    TOO_LONG = "too_long"  # over spec.dataset.maxDurationSeconds
    LABEL_TOO_LONG = "label_too_long"  # more than Whisper's 448 decoder positions
    SILENCE = "silence"  # no signal above the silence threshold
    BAD_MANIFEST_LINE = "bad_manifest_line"  # not JSON, or no audio_filepath
    DUPLICATE_ENTRY = "duplicate_entry"  # the same audio and transcript listed again
    CONFLICTING_TRANSCRIPTS = "conflicting_transcripts"  # one audio, different transcripts
    SCRIPT_MISMATCH = "script_mismatch"  # letters of another script than spec.language's

    ALL = (
        UNDECODABLE_AUDIO,
        NON_FINITE_AUDIO,
        AMPLITUDE_OUT_OF_RANGE,
        MISSING_AUDIO,
        EMPTY_TRANSCRIPT,
        MISSING_TRANSCRIPT,
        UNDECODABLE_TEXT,
        TOO_SHORT,
        TOO_LONG,
        LABEL_TOO_LONG,
        SILENCE,
        BAD_MANIFEST_LINE,
        DUPLICATE_ENTRY,
        CONFLICTING_TRANSCRIPTS,
        SCRIPT_MISMATCH,
    )


EXAMPLES_PER_REASON = 3
# Files named one by one in report.json; past this, the counts go on and the list says so.
MAX_LISTED = 100_000


@dataclass
class Sample:
    """One (audio, transcript) candidate, before any audio is read.

    `audio_uri` is the full s3:// URI; `audio_etag` is known when the object was in the listing
    (a cache hit then needs no request at all). `text` is the raw transcript, or None when it
    lives in a separate object (`text_uri`, the pairs format).
    """

    audio_uri: str
    text: str | None = None
    text_uri: str | None = None
    text_etag: str | None = None
    audio_etag: str | None = None
    duration: float | None = None
    source: str = ""  # where the sample was declared (manifest:line), for messages


@dataclass
class SkipLog:
    """Skips by reason, plus a few examples of each; safe to share between threads."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: list[dict[str, str]] = field(default_factory=list)
    files: list[dict[str, str]] = field(default_factory=list)  # every one, up to MAX_LISTED
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, reason: str, file: str, detail: str = "") -> None:
        if reason not in Skip.ALL:
            raise ValueError(f"unknown skip reason {reason!r}")
        entry = {"file": file, "reason": reason, "detail": detail[:300]}
        with self._lock:
            self.counts[reason] = self.counts.get(reason, 0) + 1
            if self.counts[reason] <= EXAMPLES_PER_REASON:
                self.examples.append(entry)
            if len(self.files) < MAX_LISTED:
                self.files.append(entry)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def merge(self, other: SkipLog) -> None:
        for ex in other.examples:
            if self.counts.get(ex["reason"], 0) < EXAMPLES_PER_REASON:
                self.examples.append(ex)
        self.files.extend(other.files[: max(0, MAX_LISTED - len(self.files))])
        for reason, n in other.counts.items():
            self.counts[reason] = self.counts.get(reason, 0) + n
