"""What a run found, typed: `RunMetrics` is metrics.json, and every reader reads it through this.

`RunMetrics.to_json()` writes the file, `RunMetrics.model_validate_json()` reads it back; keys
are camelCase as they always were, so results stored before this model (docs/gpu-runs) still
read. Fields that later trainers added have defaults: a finished run's metrics.json written by
an earlier trainer validates too. Light on purpose (pydantic and wft_api only): `wft demo` and
the benchmarks import it without torch.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field, field_serializer
from pydantic.alias_generators import to_camel
from wft_api.v1alpha1 import DatasetStatus


class _Camel(BaseModel):
    """camelCase in metrics.json, snake_case in Python."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class Example(_Camel):
    """One eval clip as the model heard it."""

    # Its URI; results stored before it was kept have none (the key is left out then).
    audio: str | None = Field(None, exclude_if=lambda value: value is None)
    reference: str
    hypothesis: str


class EvalResult(_Camel):
    """Word error rate with real decoding over a split, and its teacher-forced loss."""

    wer: float | None  # raw: references and hypotheses as they are
    wer_normalized: float | None  # Whisper's normalizer applied to both
    eval_loss: float | None
    samples: int
    examples: list[Example] = Field(default_factory=list)


class GradientCheckpointing(_Camel):
    mode: str  # off, on or offload
    reason: str


class BaseModelOrigin(_Camel):
    source: str  # what the spec named
    loaded_as: str  # in words: a transformers folder, a faster-whisper folder converted, ...


class Export(_Camel):
    """One thing written beside the adapter, relative to the run's folder."""

    path: str
    format: str  # peft, transformers or ctranslate2
    # The ctranslate2 export's weights (int8, float16, ...); the key is absent for the others.
    quantization: str | None = Field(None, exclude_if=lambda value: value is None)
    bytes: int


class CompileCacheUse(_Camel):
    uri: str
    restored_files: int
    saved: bool
    # torch's compile timers and cache hits and misses in this Job (`compile_cache.
    # compiler_stats`); absent from results written before they were recorded.
    compiler: dict[str, int | float] | None = Field(None, exclude_if=lambda value: value is None)


class RunRecord(_Camel):
    """Who the run is: in `_SUCCESS` and metrics.json (`output.run_record`)."""

    namespace: str
    name: str
    uid: str | None
    generation: int
    spec_hash: str


class RunMetrics(_Camel):
    """metrics.json: what the run trained, how well and how fast."""

    engine: str
    quantization: str
    gradient_checkpointing: GradientCheckpointing | None = None
    device: str
    batch_size: int
    steps: int
    total_steps: int
    resumed_from: int | None
    base_model: BaseModelOrigin | None = None
    english_only: bool | None = None
    baseline: EvalResult
    final: EvalResult
    # Only with dataset.generalEvalManifest: the same before and after on general speech.
    baseline_general: EvalResult | None = None
    final_general: EvalResult | None = None
    loss_curve: list[tuple[int, float]]  # [step, loss]
    eval_losses: list[tuple[int, float]]  # [step, eval loss]
    samples_per_second: float | None  # steady state: after the first step
    # The autocast dtype on a GPU (None in float32 on the CPU); with float16 the loss scale at
    # the end (far below its start of 65536: many steps overflowed and were skipped).
    mixed_precision: str | None = None
    loss_scale: float | None = None
    step_seconds: list[float]
    peak_gpu_memory_bytes: int | None
    host_peak_rss_bytes: int
    # The largest DataLoader worker (they map the same Arrow file as the main process).
    host_peak_rss_worker_bytes: int
    first_step_seconds: float | None
    time_to_first_step_seconds: float | None
    train_seconds: float
    seconds_per_stage: dict[str, float]  # the upload itself is not in it: it writes this
    exports: dict[str, Export] = Field(default_factory=dict)
    dataset: DatasetStatus
    compile_cache: CompileCacheUse | None = None
    notes: list[str]
    run: RunRecord | None = None  # set when published

    @field_serializer("dataset")
    def _dataset(self, dataset: DatasetStatus) -> dict[str, object]:
        return dataset.to_dict()  # as in status.trainer.dataset: unset fields left out

    def to_json(self) -> str:
        """metrics.json's text (json.dumps, as before the model: NaN stays NaN, not null)."""
        return json.dumps(self.model_dump(by_alias=True), indent=2)
