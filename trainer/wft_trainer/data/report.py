"""What preparation made of the dataset: `report.json`, and the summary for the resource status.

The report exists when the data stage fails too (`DataStageFailure` carries it): every skipped
file of the run is named in it, so that one run shows everything to fix.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from wft_api.v1alpha1 import DatasetStatus

from ..errors import TrainerFailure


class SkippedExample(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    file: str = Field(description="The audio (or manifest line) that was skipped.")
    reason: str = Field(description="One of the skip reasons (samples.Skip).")
    detail: str = Field("", description="Why, in words.")


class PrepareReport(BaseModel):
    """Counts are samples; `skipped` covers train and eval candidates alike."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    format: str = Field(description="Dataset format used (detected when spec said auto).")
    format_detected: bool = Field(False, description="True when the format was auto-detected.")
    dataset_uri: str = ""
    samples: int = Field(0, description="Training samples written.")
    eval_samples: int = Field(0, description="Evaluation samples written.")
    hours: float = Field(0.0, description="Hours of training audio.")
    eval_hours: float = 0.0
    general_eval_samples: int = Field(
        0, description="General evaluation samples written (dataset.generalEvalManifest)."
    )
    candidates: int = Field(0, description="Samples declared by the dataset (before skipping).")
    skipped: int = 0
    skipped_reasons: dict[str, int] = Field(default_factory=dict)
    skipped_examples: list[SkippedExample] = Field(default_factory=list)
    skipped_files: list[SkippedExample] = Field(
        default_factory=list,
        description="Every skipped sample, in the order met (at most samples.MAX_LISTED).",
    )
    warnings: dict[str, int] = Field(
        default_factory=dict, description="Samples kept but worth a look, by reason."
    )
    warned_files: list[SkippedExample] = Field(default_factory=list)
    failure: dict[str, str] | None = Field(
        None,
        description="{reason, message} when the data stage failed; the counts are then "
        "what it had found by then (all of it, unless the failure stopped it early).",
    )
    normalization: str = "clean"
    num_mel_bins: int = 80
    sample_rate: int = 16000
    fingerprint: str = ""
    reused: str | None = Field(None, description="'local' or 's3' when a cached result was used.")
    downloaded_files: int = 0
    downloaded_bytes: int = 0
    timings: dict[str, float] = Field(default_factory=dict, description="Seconds per stage.")

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="json")

    def to_status(self) -> DatasetStatus:
        return DatasetStatus(
            format=self.format,
            samples=self.samples,
            eval_samples=self.eval_samples,
            skipped=self.skipped,
            skipped_reasons=dict(self.skipped_reasons),
            hours=round(self.hours, 4),
            warnings=dict(self.warnings),
        )

    def summary(self) -> str:
        """A few lines for a terminal or a log."""
        lines = [
            f"format: {self.format}{' (detected)' if self.format_detected else ''}",
            f"samples: {self.samples} train ({self.hours:.3f} h), {self.eval_samples} eval "
            f"({self.eval_hours:.3f} h)"
            + (f", {self.general_eval_samples} general eval" if self.general_eval_samples else ""),
            f"skipped: {self.skipped} of {self.candidates}",
        ]
        lines += [f"  {reason}: {n}" for reason, n in sorted(self.skipped_reasons.items())]
        if self.warnings:
            lines.append(f"warnings: {sum(self.warnings.values())} (kept)")
            lines += [f"  {reason}: {n}" for reason, n in sorted(self.warnings.items())]
            lines += [f"    {w.file}: {w.detail}" for w in self.warned_files[:3]]
        if self.failure:
            lines.append(f"failed: {self.failure['reason']}: {self.failure['message']}")
        if self.reused:
            lines.append(f"reused prepared data from the {self.reused} cache")
        return "\n".join(lines)


class DataStageFailure(TrainerFailure):
    """The data stage failed; `report` is everything it found (what callers write as
    report.json and put in the status)."""

    def __init__(self, reason: str, message: str, report: PrepareReport) -> None:
        super().__init__(reason, message)
        self.report = report
