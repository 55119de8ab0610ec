"""The `wft.dev/v1alpha1` `WhisperFineTune` resource: one typed model for spec and status.

This module is the single source of truth for the API. The operator, the trainer and the CLI
import it; the CRD in `crds/` is generated from it (`make generate`). It imports nothing
heavier than pydantic so that the operator image stays small.

Every field carries a description (what `kubectl explain` shows), a default where one makes
sense, and its constraints. Constraints a JSON schema can express live in `Field(...)`; rules
across fields are model validators *and*, where CEL can say them, `x-kubernetes-validations`
(see `CEL_RULES`), so that the API server rejects what the operator would.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from . import uris
from .languages import LANGUAGES

GROUP = "wft.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "WhisperFineTune"
PLURAL = "whisperfinetunes"
SINGULAR = "whisperfinetune"
SHORT_NAMES = ["wft"]

DEFAULT_BASE_MODEL = "openai/whisper-large-v3"
WHISPER_MAX_SECONDS = 30.0
# Whisper's decoder has 448 positions; labels (prefix tokens included) never exceed it.
WHISPER_MAX_LABEL_TOKENS = 448
# Integers as the API server stores them: every integer field has bounds within int64 (the
# API server refuses anything beyond), within int32 where the Job field it becomes is one.
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
# Longest status message (as metav1.Condition.message): the operator writes at most this.
MAX_MESSAGE_LENGTH = 32768

# A bucket name as S3 allows it (3-63 characters of lowercase letters, digits, dots and
# hyphens, starting and ending with a letter or digit), then an optional key prefix.
S3_URI_PATTERN = r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?$"
DNS1123_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS1123_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# Kubernetes resource quantity (k8s.io/apimachinery/pkg/api/resource).
# Kubernetes' quantity pattern without its leading minus: no request here can be negative.
QUANTITY_PATTERN = (
    r"^\+?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
HF_REPO_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9][A-Za-z0-9_.\-]*)?$"
URL_PATTERN = r"^https?://[^\s/]+(/.*)?$"
# Label keys and values, as Kubernetes allows them (a node selector the API server would refuse
# in the Job is refused in the resource instead).
QUALIFIED_NAME_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"
# A folder inside the trainer's image or volumes (absolute, or relative for `wft train`).
LOCAL_PATH_PATTERN = r"^\.{0,2}/\S*$"
MODEL_SOURCE_PATTERN = (
    f"^({S3_URI_PATTERN[1:-1]}|{HF_REPO_ID_PATTERN[1:-1]}|{LOCAL_PATH_PATTERN[1:-1]})$"
)
# The `.en` convention (openai/whisper-tiny.en): checkpoints that know English and nothing else.
ENGLISH_ONLY_PATTERN = r"[.]en/?$"
# The weight types CTranslate2's converter accepts (ctranslate2.specs.model_spec.ACCEPTED_MODEL_TYPES).
CTranslate2Quantization = Literal[
    "float16",
    "int8_float16",
    "int8",
    "int8_float32",
    "int8_bfloat16",
    "int16",
    "bfloat16",
    "float32",
]

# What each pattern means, in words, for error messages ("must be ..." follows the value).
PATTERN_HINTS: dict[str, str] = {
    S3_URI_PATTERN: "an s3:// URI with a valid bucket name (3-63 lowercase letters, digits, "
    "'.' or '-'), e.g. s3://my-bucket/prefix/",
    DNS1123_LABEL_PATTERN: "a DNS-1123 label: lowercase letters, digits and '-', starting and "
    "ending with a letter or digit",
    DNS1123_SUBDOMAIN_PATTERN: "a DNS-1123 name: lowercase letters, digits, '-' and '.'",
    QUANTITY_PATTERN: "a positive Kubernetes quantity such as 8, 500m or 64Gi",
    URL_PATTERN: "an http:// or https:// URL",
    MODEL_SOURCE_PATTERN: "a Hugging Face id such as openai/whisper-large-v3, an s3:// prefix "
    "with a valid bucket name, or a folder path, holding a transformers model or a "
    "faster-whisper (CTranslate2) model",
    "^auto$": "a positive integer or 'auto'",
    r"^[a-z0-9-]+$": "lowercase letters, digits and '-', e.g. eu-west-1",
    r"^\S+$": "an image reference without spaces",
    QUALIFIED_NAME_PATTERN: "a label key: an optional DNS-subdomain prefix and '/', then at "
    "most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
    LABEL_VALUE_PATTERN: "a label value: at most 63 letters, digits, '-', '_' or '.', "
    "starting and ending with a letter or digit",
}

LoraTarget = Literal["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]
Phase = Literal[
    "Pending",
    "Preparing",
    "Training",
    "Evaluating",
    "Uploading",
    "Succeeded",
    "Failed",
    "Suspended",
]
# What the trainer reports it is doing (status.trainer.stage); the running ones become the phase.
TrainerStage = Literal["Preparing", "Training", "Evaluating", "Uploading", "Succeeded", "Failed"]
RUNNING_STAGES: frozenset[str] = frozenset({"Preparing", "Training", "Evaluating", "Uploading"})
DEFAULT_LORA_TARGETS: tuple[LoraTarget, ...] = ("q_proj", "k_proj", "v_proj", "out_proj")
TERMINAL_PHASES: frozenset[str] = frozenset({"Succeeded", "Failed"})


def short_text(value: str, limit: int = 60) -> str:
    text = f"'{value}'"
    return text if len(text) <= limit else text[: limit - 4] + "...'"


class _Model(BaseModel):
    """camelCase in YAML, snake_case in Python; unknown keys are errors, not silently dropped."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_assignment=True,
    )

    def to_dict(self) -> dict[str, Any]:
        """The resource form: camelCase keys, unset optional fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class _Spec(_Model):
    """What a user writes: numbers are finite (JSON, hence the API server, has no NaN or Inf)."""

    model_config = ConfigDict(allow_inf_nan=False)


def _rule(check: Any) -> Any:
    """A pydantic after-validator from a `uris` check that returns a message or None."""

    def validate(value: str) -> str:
        problem = check(value)
        if problem:
            raise ValueError(problem)
        return value

    return AfterValidator(validate)


def _s3_only(check: Any) -> Any:
    return lambda v: check(v) if v.startswith("s3://") else None


S3Uri = Annotated[
    str,
    Field(
        pattern=S3_URI_PATTERN,
        max_length=1024,
        json_schema_extra={"x-kubernetes-validations": uris.KEY_CEL_RULES},
    ),
    _rule(uris.dot_segment_problem),
]
# A key relative to dataset.uri, or a full s3:// URI.
S3Key = Annotated[
    str,
    Field(
        min_length=1,
        max_length=1024,
        json_schema_extra={"x-kubernetes-validations": uris.KEY_CEL_RULES},
    ),
    _rule(uris.dot_segment_problem),
]
Quantity = Annotated[
    int | str,
    Field(
        union_mode="left_to_right",
        json_schema_extra={
            "x-kubernetes-int-or-string": True,
            "pattern": QUANTITY_PATTERN,
            "maxLength": 64,
            "minimum": 0,
            "maximum": INT64_MAX,
        },
    ),
]
LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_PATTERN)]
Count = Annotated[int, Field(ge=0, le=INT64_MAX)]


class DatasetSpec(_Spec):
    """Where the audio and transcripts are, and which of them to use."""

    uri: S3Uri = Field(
        description="S3 prefix holding the dataset, e.g. s3://speech-data/call-center/v3/. "
        "The bucket name must be a valid S3 bucket name."
    )
    format: Literal["auto", "manifest", "audiofolder", "pairs"] = Field(
        "auto",
        description="Dataset layout: 'manifest' (NeMo-style JSONL with audio_filepath, text and "
        "optional duration), 'audiofolder' (Hugging Face AudioFolder metadata.csv with file_name "
        "and a transcription column), 'pairs' (name.wav beside name.txt; also flac, mp3, ogg, "
        "opus, m4a), or 'auto' to detect it.",
    )
    manifest: S3Key | None = Field(
        None,
        description="Training manifest: a key relative to uri or a full s3:// URI. Default: "
        "detected (manifest.jsonl, train.jsonl, or the only .jsonl file under uri).",
    )
    eval_manifest: S3Key | None = Field(
        None,
        description="Evaluation manifest (key relative to uri or s3:// URI). When set, "
        "evalFraction is not used.",
    )
    general_eval_manifest: S3Key | None = Field(
        None,
        description="A second evaluation manifest (key relative to uri or s3:// URI under it) of "
        "general speech outside the domain, such as everyday sentences. It is scored before and "
        "after training beside the eval split (status.trainer.metrics.baselineGeneralWer and "
        "generalWer), so that a fine-tune that costs general accuracy shows it.",
    )
    eval_fraction: float = Field(
        0.1,
        ge=0.0,
        lt=1.0,
        description="Fraction of samples held out for evaluation when no evalManifest is given, "
        "chosen deterministically by a hash of the audio path. 0 disables evaluation.",
    )
    min_duration_seconds: float = Field(
        0.1, ge=0.0, description="Clips shorter than this are skipped (reason: too_short)."
    )
    max_duration_seconds: float = Field(
        WHISPER_MAX_SECONDS,
        gt=0.0,
        le=WHISPER_MAX_SECONDS,
        description="Clips longer than this are skipped (reason: too_long). At most 30: "
        "Whisper's input window.",
    )
    max_samples: int | None = Field(
        None,
        ge=1,
        le=INT64_MAX,
        description="Use at most this many training samples (after skipping).",
    )
    max_skipped_fraction: float = Field(
        0.2,
        ge=0.0,
        le=1.0,
        description="Fail the run when more than this fraction of the samples had to be skipped.",
    )
    script_mismatch: Literal["warn", "skip"] = Field(
        "warn",
        description="Transcripts mostly in another writing system than spec.language's (Cyrillic "
        "for 'en', Latin for 'ja'; Latin for any language with task translate): 'warn' counts "
        "them under status.trainer.dataset.warnings and report.json (reason script_mismatch) and trains "
        "on them; 'skip' skips them (counted like any other skipped sample).",
    )
    cache_uri: S3Uri | None = Field(
        None,
        description="Optional S3 prefix where the prepared features (and a faster-whisper base "
        "model converted to transformers, under models/) are cached, so that a retry or a "
        "retrain on another node skips that work when data and settings are unchanged.",
    )

    @model_validator(mode="after")
    def _durations_ordered(self) -> DatasetSpec:
        if self.min_duration_seconds >= self.max_duration_seconds:
            raise ValueError(
                f"minDurationSeconds ({self.min_duration_seconds}) must be less than "
                f"maxDurationSeconds ({self.max_duration_seconds})"
            )
        return self


class PreprocessingSpec(_Spec):
    """How transcripts are normalized before tokenization (audio always becomes 16 kHz mono)."""

    normalization: Literal["none", "clean", "whisper-basic", "whisper-english"] = Field(
        "clean",
        description="Transcript normalization: 'clean' (Unicode NFKC, markup such as [noise] or "
        "<unk> and control characters removed, whitespace collapsed; case and punctuation kept), "
        "'whisper-basic' and 'whisper-english' (Whisper's own normalizers: lowercase, no "
        "punctuation), or 'none'.",
    )


class LoraSpec(_Spec):
    """The LoRA adapter trained on top of the frozen base model."""

    rank: int = Field(32, ge=1, le=1024, description="LoRA rank r.")
    alpha: float = Field(64.0, gt=0.0, le=1e6, description="LoRA scaling numerator (alpha / rank).")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    target_modules: list[LoraTarget] = Field(
        default_factory=lambda: list(DEFAULT_LORA_TARGETS),
        min_length=1,
        max_length=6,
        description="Projections that get an adapter, in self- and cross-attention (and fc1/fc2 "
        "in the feed-forward blocks) of both encoder and decoder.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )

    @field_validator("target_modules")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        dupes = sorted({m for m in v if v.count(m) > 1})
        if dupes:
            raise ValueError(f"duplicate entries: {', '.join(dupes)}")
        return v


class TrainingSpec(_Spec):
    """Optimisation settings. Give maxSteps or epochs, not both; neither means 3 epochs."""

    max_steps: int | None = Field(
        None, ge=1, le=INT64_MAX, description="Number of optimizer steps."
    )
    epochs: float | None = Field(
        None, gt=0.0, le=1000.0, description="Passes over the training set (fractions allowed)."
    )
    learning_rate: float = Field(1e-4, gt=0.0, le=1.0, description="Peak learning rate.")
    batch_size: int | Literal["auto"] = Field(
        "auto",
        description="Per-device batch size, or 'auto' to probe the largest batch that fits the "
        "GPU (a real step, backing off on out-of-memory).",
        json_schema_extra={
            "x-kubernetes-int-or-string": True,
            "pattern": "^auto$",
            "maxLength": 4,
            "minimum": 1,
            "maximum": INT32_MAX,
        },
    )
    gradient_accumulation_steps: int = Field(
        1, ge=1, le=1024, description="Micro-batches accumulated per optimizer step."
    )
    warmup_steps: int = Field(
        10, ge=0, le=INT64_MAX, description="Linear learning-rate warm-up steps."
    )
    lr_scheduler: Literal["linear", "cosine", "constant"] = Field(
        "linear", description="Learning-rate schedule after warm-up."
    )
    weight_decay: float = Field(0.01, ge=0.0, lt=1.0, description="AdamW weight decay.")
    seed: int = Field(3407, ge=0, le=2**32 - 1, description="Seed for data order and LoRA init.")
    eval_steps: int | None = Field(
        None,
        ge=1,
        le=INT64_MAX,
        description="Compute eval loss every N steps (WER is computed at the end).",
    )
    checkpoint_steps: int = Field(
        100,
        ge=1,
        le=INT64_MAX,
        description="Save a resumable checkpoint to S3 every N steps (under the run's output "
        "folder; each replaces the previous one, and all are removed when the run succeeds).",
    )
    optimizer: Literal["adamw_torch", "adamw_8bit", "adafactor", "sgd"] = Field(
        "adamw_torch", description="Optimizer for the LoRA weights."
    )
    gradient_checkpointing: Literal["auto", "off", "on", "offload"] = Field(
        "auto",
        description="Recompute activations in the backward pass to save GPU memory: off (the "
        "fastest, about 2.5 GiB a sample on large-v3), on, or offload (Unsloth: the kept "
        "activations go to host RAM, the least GPU memory). auto picks the fastest that fits "
        "the GPU's free memory; the choice is in the log and metrics.json.",
    )

    @field_validator("batch_size")
    @classmethod
    def _positive_batch(cls, v: int | str) -> int | str:
        if isinstance(v, int) and not 1 <= v <= INT32_MAX:
            raise ValueError(f"must be 'auto' or an integer from 1 to {INT32_MAX}")
        return v

    @model_validator(mode="after")
    def _steps_or_epochs(self) -> TrainingSpec:
        if self.max_steps is not None and self.epochs is not None:
            raise ValueError("set maxSteps or epochs, not both")
        return self


class OutputSpec(_Spec):
    """Where the adapter, processor, metrics and model card are written."""

    uri: S3Uri = Field(
        description="S3 prefix for results; each run gets its own folder under it "
        "(<uri>/<namespace>/<name>/<metadata.uid>/generation-<n>/): a resource created again "
        "under the same name never shares one."
    )
    merged_model: bool = Field(
        False,
        description="Also write a merged 16-bit model (merged/) loadable by "
        "WhisperForConditionalGeneration.from_pretrained.",
    )
    ctranslate2: bool = Field(
        False,
        description="Also write the fine-tuned model (base merged with the adapter) as a "
        "faster-whisper (CTranslate2) folder (ctranslate2/), with its tokenizer and "
        "preprocessor files, for serving with faster_whisper.WhisperModel.",
    )
    ctranslate2_quantization: CTranslate2Quantization = Field(
        "float16",
        description="Weight type of the CTranslate2 export: float16 for GPUs, int8 (or "
        "int8_float16 on GPUs) for a quarter of the size and fast CPU serving; CTranslate2 "
        "converts at load time where the device lacks the type.",
    )


class StorageSpec(_Spec):
    """How the trainer reaches S3 (AWS, MinIO and other S3-compatible stores)."""

    endpoint: str | None = Field(
        None,
        max_length=2048,
        description="S3 endpoint URL for MinIO and other S3-compatible stores "
        "(e.g. http://minio.storage:9000): http or https, a host, no credentials (those go in "
        "credentialsSecret). Link-local and cloud metadata addresses are refused unless the "
        "platform allows them. Default: AWS.",
        json_schema_extra={"x-kubernetes-validations": uris.ENDPOINT_CEL_RULES},
    )
    region: str | None = Field(
        None, pattern=r"^[a-z0-9-]+$", max_length=64, description="S3 region, e.g. eu-west-1."
    )
    credentials_secret: str | None = Field(
        None,
        pattern=DNS1123_SUBDOMAIN_PATTERN,
        max_length=253,
        description="Secret in the resource's namespace with keys AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY (optionally AWS_SESSION_TOKEN). Omit to use workload identity "
        "(spec.serviceAccountName).",
    )
    addressing_style: Literal["auto", "path", "virtual"] = Field(
        "auto", description="S3 addressing style; MinIO usually needs 'path'."
    )

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        problem = uris.endpoint_problem(v) if v is not None else None
        if problem:
            raise ValueError(problem)
        return v


# core/v1's own toleration rules: (CEL rule for the CRD, message, the same check in Python).
TOLERATION_RULES: list[tuple[str, str, Any]] = [
    (
        "(has(self.key) && size(self.key) > 0) || (has(self.operator) && "
        "self.operator == 'Exists')",
        "operator must be Exists when key is empty (that toleration matches every taint)",
        lambda t: bool(t.key) or t.operator == "Exists",
    ),
    (
        "!has(self.operator) || self.operator != 'Exists' || !has(self.value) || "
        "size(self.value) == 0",
        "value must be empty when operator is Exists",
        lambda t: t.operator != "Exists" or not t.value,
    ),
    (
        "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
        "tolerationSeconds needs effect NoExecute (it says how long a NoExecute taint is "
        "tolerated)",
        lambda t: t.toleration_seconds is None or t.effect == "NoExecute",
    ),
]


class Toleration(_Spec):
    """A pod toleration (core/v1 Toleration)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [{"rule": r, "message": m} for r, m, _ in TOLERATION_RULES]
        }
    )

    key: str | None = Field(
        None,
        max_length=317,
        pattern=QUALIFIED_NAME_PATTERN,
        description="Taint key; empty (with operator Exists) matches every taint.",
    )
    operator: Literal["Exists", "Equal"] = Field("Equal", description="Exists or Equal.")
    value: str | None = Field(
        None, max_length=63, pattern=LABEL_VALUE_PATTERN, description="Taint value for Equal."
    )
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect to tolerate; empty matches all."
    )
    toleration_seconds: int | None = Field(
        None,
        ge=0,
        le=INT64_MAX,
        description="How long a NoExecute taint is tolerated (effect must be NoExecute).",
    )

    @model_validator(mode="after")
    def _as_kubernetes_allows(self) -> Toleration:
        # core/v1 validation: a Job with any of these is refused, so the resource is instead.
        for rule in TOLERATION_RULES:
            if not rule[2](self):
                raise ValueError(rule[1])
        return self


# The upper bound of spec.resources.nodes: one rendezvous on pod 0, one all-reduce ring; past
# this a run wants JobSet or a scheduler for gangs, not one Indexed Job.
MAX_TRAINING_NODES = 16
UNSLOTH_NODES_MESSAGE = (
    "engine 'unsloth' trains on one GPU of one node: with resources.nodes above 1 use engine "
    "'transformers' or 'auto' (several nodes train with transformers), or set resources.nodes "
    "to 1"
)
UNSLOTH_GPUS_MESSAGE = (
    "engine 'unsloth' trains on one GPU: with resources.gpus above 1 use engine 'transformers' "
    "or 'auto' (several GPUs train with transformers), or set resources.gpus to 1"
)


class ResourcesSpec(_Spec):
    """What the trainer pod asks of the cluster."""

    gpus: int = Field(
        1,
        ge=0,
        le=64,
        description="Whole GPUs (nvidia.com/gpu) for the trainer pod. More than one runs one "
        "trainer process per GPU (torchrun, data parallel): training.batchSize is then per GPU "
        "and each optimizer step sees batchSize x gpus samples; engine 'unsloth' is refused.",
    )
    nodes: int = Field(
        1,
        ge=1,
        le=MAX_TRAINING_NODES,
        description="Nodes (pods) the training spans, each with `gpus` GPUs: above 1 the "
        "trainer runs as an Indexed Job of that many pods that meet through a headless Service "
        "(torchrun --nnodes); each optimizer step sees batchSize x gpus x nodes samples; "
        "engine 'unsloth' is refused. At most 16.",
    )
    cpu: Quantity | None = Field(
        None,
        description="CPU request and limit (a quantity, e.g. 8 or 7500m). Default: the "
        "operator's configured default (8 unless the platform team changed it).",
    )
    memory: Quantity | None = Field(
        None,
        description="Memory request and limit (a quantity). Unsloth's gradient checkpointing "
        "keeps activations in host RAM, growing with the batch: large-v3 measured 10Gi at "
        "batch 32 and 33Gi at batch 64 on an H100. Default: the operator's configured "
        "default (64Gi unless the platform team changed it).",
    )
    node_selector: dict[str, LabelValue] = Field(
        default_factory=dict,
        max_length=64,
        description="Node labels the trainer pod must match (at most 64).",
    )
    tolerations: list[Toleration] = Field(
        default_factory=list,
        max_length=64,
        description="Tolerations for GPU node taints (at most 64).",
    )
    priority_class_name: str | None = Field(
        None,
        pattern=DNS1123_SUBDOMAIN_PATTERN,
        max_length=253,
        description="PriorityClass of the trainer pod.",
    )

    @field_validator("node_selector")
    @classmethod
    def _label_keys(cls, v: dict[str, str]) -> dict[str, str]:
        # Keys in Python only: a structural schema cannot constrain map keys.
        for key in v:
            prefix = key.rpartition("/")[0]
            if len(key) > 317 or len(prefix) > 253 or not re.match(QUALIFIED_NAME_PATTERN, key):
                raise ValueError(
                    f"{short_text(key)} is not valid; must be {PATTERN_HINTS[QUALIFIED_NAME_PATTERN]}"
                )
        return v

    @field_validator("cpu", "memory")
    @classmethod
    def _quantity(cls, v: int | str | None) -> str | None:
        if v is None:
            return None
        text = str(v)
        if not re.match(QUANTITY_PATTERN, text) or text.startswith("-"):
            raise ValueError("must be a positive Kubernetes quantity such as 8, 500m or 64Gi")
        return text


class WhisperFineTuneSpec(_Spec):
    """The desired fine-tune."""

    base_model: Annotated[str, _rule(_s3_only(uris.dot_segment_problem))] = Field(
        DEFAULT_BASE_MODEL,
        min_length=1,
        max_length=1024,
        pattern=MODEL_SOURCE_PATTERN,
        json_schema_extra={"x-kubernetes-validations": uris.S3_ONLY_KEY_CEL_RULES},
        description="Hugging Face model id (openai/whisper-large-v3), or an s3:// prefix or a "
        "folder holding a transformers save_pretrained model or a faster-whisper (CTranslate2) "
        "model (model.bin, config.json, tokenizer.json), converted by the trainer; air-gapped "
        "clusters never touch the hub. English-only (*.en) models train with language 'en'.",
    )
    language: str = Field(
        "en",
        description="Whisper language code of the audio (en, de, yue, ...).",
        json_schema_extra={"enum": list(sorted(LANGUAGES))},
    )
    task: Literal["transcribe", "translate"] = Field(
        "transcribe", description="transcribe (same language) or translate (to English)."
    )
    dataset: DatasetSpec = Field(description="Training and evaluation data.")
    preprocessing: PreprocessingSpec = Field(
        default_factory=PreprocessingSpec, description="Transcript normalization."
    )
    lora: LoraSpec = Field(default_factory=LoraSpec, description="LoRA adapter settings.")
    quantization: Literal["4bit", "8bit", "none"] = Field(
        "4bit", description="Base-model weight quantization during training (QLoRA at 4bit)."
    )
    engine: Literal["auto", "unsloth", "transformers"] = Field(
        "auto",
        description="Training engine: unsloth (GPU only), transformers (+peft, any device), or "
        "auto (on a CUDA GPU: transformers with a 16-bit base and compiled layers on GPUs of "
        "80 GB and up and for tiny, base and small, which it trains faster; unsloth for medium "
        "and large on smaller GPUs; transformers without a GPU).",
    )
    training: TrainingSpec = Field(
        default_factory=TrainingSpec, description="Optimisation settings."
    )
    output: OutputSpec = Field(description="Where results are written.")
    storage: StorageSpec = Field(default_factory=StorageSpec, description="S3 access settings.")
    resources: ResourcesSpec = Field(
        default_factory=ResourcesSpec, description="Trainer pod resources and placement."
    )
    image: str | None = Field(
        None,
        min_length=1,
        max_length=512,
        pattern=r"^\S+$",
        description="Trainer image override. Default: the operator's configured trainer image.",
    )
    service_account_name: str | None = Field(
        None,
        pattern=DNS1123_SUBDOMAIN_PATTERN,
        max_length=253,
        description="Existing ServiceAccount for the trainer (workload identity for S3). The "
        "operator binds its per-resource status Role to it. Default: one created per resource.",
    )
    hf_token_secret: str | None = Field(
        None,
        pattern=DNS1123_SUBDOMAIN_PATTERN,
        max_length=253,
        description="Secret with key HF_TOKEN for gated or private Hugging Face models.",
    )
    queue_name: str | None = Field(
        None,
        pattern=DNS1123_SUBDOMAIN_PATTERN,
        max_length=253,
        description="Kueue LocalQueue; sets the kueue.x-k8s.io/queue-name label on the Job.",
    )
    suspend: bool = Field(False, description="Suspend the training Job (resumable).")
    backoff_limit: int = Field(
        2, ge=0, le=100, description="Retries of a failed trainer pod before the run fails."
    )
    active_deadline_seconds: int | None = Field(
        None,
        ge=1,
        le=INT64_MAX,
        description="Wall-clock limit for the Job in seconds; exceeded means Failed.",
    )
    ttl_seconds_after_finished: int | None = Field(
        None,
        ge=0,
        le=INT32_MAX,
        description="Delete the finished Job (not the results) this many seconds after it ends.",
    )
    retrain_nonce: str | None = Field(
        None,
        max_length=253,
        description="Change this (e.g. to a dataset version or a date) to retrain with an "
        "otherwise unchanged spec.",
    )

    @field_validator("language")
    @classmethod
    def _known_language(cls, v: str) -> str:
        if v not in LANGUAGES:
            raise ValueError(f"not a Whisper language code; use one of: {', '.join(LANGUAGES)}")
        return v

    @model_validator(mode="after")
    def _cross_field(self) -> WhisperFineTuneSpec:
        if self.engine == "unsloth" and self.resources.gpus < 1:
            raise ValueError("engine 'unsloth' needs a GPU: set resources.gpus to 1 or more")
        if self.engine == "unsloth" and self.resources.gpus > 1:
            raise ValueError(UNSLOTH_GPUS_MESSAGE)
        if self.engine == "unsloth" and self.resources.nodes > 1:
            raise ValueError(UNSLOTH_NODES_MESSAGE)
        if self.task == "translate" and self.language == "en":
            raise ValueError("task 'translate' translates into English; language must not be 'en'")
        if re.search(ENGLISH_ONLY_PATTERN, self.base_model) and self.language != "en":
            raise ValueError(
                f"baseModel {self.base_model} is English-only (.en), so language must be 'en', "
                f"not {self.language!r}; use a multilingual model such as {DEFAULT_BASE_MODEL}"
            )
        return self


class Condition(_Model):
    """A status condition, as the Kubernetes API conventions define it."""

    type: str = Field(max_length=316, description="Condition type, e.g. Ready, Succeeded, Failed.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(max_length=1024, description="CamelCase reason, a named constant.")
    message: str = Field("", max_length=MAX_MESSAGE_LENGTH, description="Human-readable detail.")
    last_transition_time: str = Field(
        max_length=64,
        description="When status last flipped (RFC 3339).",
        json_schema_extra={"format": "date-time"},
    )
    observed_generation: int | None = Field(
        None, ge=0, le=INT64_MAX, description="metadata.generation this condition describes."
    )


class Progress(_Model):
    """Training progress, reported by the trainer."""

    step: int = Field(0, ge=0, le=INT64_MAX, description="Optimizer steps done.")
    total_steps: int | None = Field(
        None, ge=0, le=INT64_MAX, description="Optimizer steps planned."
    )
    percent: float | None = Field(None, ge=0.0, le=100.0, description="Percent done.")
    eta_seconds: int | None = Field(None, ge=0, le=INT64_MAX, description="Estimated seconds left.")
    epoch: float | None = Field(None, ge=0.0, description="Epochs done (fractional).")


class Metrics(_Model):
    """Losses and word error rates (fractions: 0.12 is 12%)."""

    train_loss: float | None = Field(None, description="Latest training loss.")
    eval_loss: float | None = Field(None, description="Latest teacher-forced eval loss.")
    baseline_wer: float | None = Field(None, ge=0.0, description="WER of the base model.")
    wer: float | None = Field(None, ge=0.0, description="WER of the fine-tuned model.")
    baseline_general_wer: float | None = Field(
        None, ge=0.0, description="WER of the base model on dataset.generalEvalManifest."
    )
    general_wer: float | None = Field(
        None, ge=0.0, description="WER of the fine-tuned model on dataset.generalEvalManifest."
    )
    samples_per_second: float | None = Field(None, ge=0.0, description="Training throughput.")
    batch_size: int | None = Field(
        None, ge=1, le=INT64_MAX, description="Batch size used (after auto)."
    )


class DatasetStatus(_Model):
    """What preparation made of the dataset."""

    format: str | None = Field(
        None, max_length=64, description="Detected or configured dataset format."
    )
    samples: int = Field(0, ge=0, le=INT64_MAX, description="Training samples used.")
    eval_samples: int = Field(0, ge=0, le=INT64_MAX, description="Evaluation samples used.")
    skipped: int = Field(0, ge=0, le=INT64_MAX, description="Samples skipped.")
    skipped_reasons: dict[str, Count] = Field(
        default_factory=dict, max_length=64, description="Skipped samples by reason."
    )
    hours: float = Field(0.0, ge=0.0, description="Hours of training audio used.")
    warnings: dict[str, Count] = Field(
        default_factory=dict,
        max_length=64,
        description="Samples kept but worth a look, by reason (script_mismatch).",
    )


class TrainerStatus(_Model):
    """What the trainer reports about its run: written by the trainer alone, read by everyone.

    The trainer replaces the whole report on each write (a merge patch scoped to
    `status.trainer`); `generation` and `pod` say which run and which attempt wrote it, so a
    report of an earlier run or attempt is never taken for the current one.
    """

    generation: int | None = Field(
        None,
        ge=1,
        le=INT64_MAX,
        description="metadata.generation of the spec this run trains (its Job's "
        "wft.dev/generation label; suspend and resume keep the run and this number).",
    )
    pod: str | None = Field(
        None, max_length=253, description="The trainer pod that wrote this report."
    )
    stage: TrainerStage | None = Field(None, description="What the trainer is doing, or did.")
    message: str | None = Field(
        None, max_length=MAX_MESSAGE_LENGTH, description="The trainer's own words on its stage."
    )
    progress: Progress | None = Field(None, description="Training progress.")
    metrics: Metrics | None = Field(None, description="Losses and WER.")
    dataset: DatasetStatus | None = Field(None, description="Dataset summary.")
    adapter_uri: str | None = Field(
        None, max_length=2048, description="s3:// folder holding the LoRA adapter."
    )
    last_update_time: str | None = Field(
        None,
        max_length=64,
        description="When the trainer wrote this report.",
        json_schema_extra={"format": "date-time"},
    )


class WhisperFineTuneStatus(_Model):
    """The observed state. One writer per field: the operator writes everything but `trainer`,
    deriving it from the Job, its Pods and the trainer's report; the trainer writes `trainer`."""

    phase: Phase | None = Field(None, description="One-word summary for humans and kubectl get.")
    message: str | None = Field(
        None, max_length=MAX_MESSAGE_LENGTH, description="What is happening, or why it failed."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=32,
        description="Conditions keyed by type: Accepted, Running, Suspended, Succeeded, Failed.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    observed_generation: int | None = Field(
        None, ge=0, le=INT64_MAX, description="metadata.generation this status describes."
    )
    job_name: str | None = Field(
        None, max_length=253, description="The trainer Job of the current run."
    )
    start_time: str | None = Field(
        None,
        max_length=64,
        description="When the run started.",
        json_schema_extra={"format": "date-time"},
    )
    completion_time: str | None = Field(
        None,
        max_length=64,
        description="When the run ended.",
        json_schema_extra={"format": "date-time"},
    )
    trainer: TrainerStatus | None = Field(
        None, description="The trainer's report on its run (written by the trainer only)."
    )


class ObjectMeta(BaseModel):
    """The part of metadata the API checks; everything else passes through untouched."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=DNS1123_LABEL_PATTERN,
        description="A DNS-1123 label: lowercase letters, digits and '-', at most 63 characters.",
    )
    namespace: str | None = Field(None, pattern=DNS1123_LABEL_PATTERN, max_length=63)
    generation: int | None = Field(None, ge=0, le=INT64_MAX)
    uid: str | None = Field(None, max_length=128)


class WhisperFineTune(_Model):
    """A declarative Whisper fine-tune: data in S3 in, a LoRA adapter in S3 out."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=to_camel)

    api_version: Literal["wft.dev/v1alpha1"] = Field("wft.dev/v1alpha1", description=API_VERSION)
    kind: Literal["WhisperFineTune"] = Field("WhisperFineTune", description=KIND)
    metadata: ObjectMeta
    spec: WhisperFineTuneSpec
    status: WhisperFineTuneStatus | None = None


class ResourceRef(_Model):
    """Which resource (and generation) a trainer run belongs to."""

    namespace: str = Field("default", description="Namespace of the resource.")
    name: str = Field(description="Name of the resource.")
    uid: str | None = Field(None, description="UID of the resource, when it lives in a cluster.")
    generation: int = Field(1, ge=1, le=INT64_MAX, description="metadata.generation being trained.")


class TrainerConfig(_Model):
    """What the operator hands the trainer: JSON in a file (a ConfigMap mounted into the pod,
    named by WFT_CONFIG_FILE) or, for local runs, in the WFT_CONFIG variable. Read once."""

    resource: ResourceRef = Field(description="The resource this run belongs to.")
    spec: WhisperFineTuneSpec = Field(description="The resource's spec at that generation.")
    report_status: bool = Field(
        True, description="Patch the resource's status (false for local runs)."
    )

    @property
    def run_output_uri(self) -> str:
        return run_output_uri(self.spec.output.uri, self.resource)


def run_output_uri(output_uri: str, resource: ResourceRef) -> str:
    """One folder per resource incarnation and generation, so a finished run is never
    overwritten and a resource created again under an old name starts afresh:
    `<output>/<namespace>/<name>/<uid>/generation-<n>/`. Without a uid (`wft train`, a resource
    never applied) `<output>/<namespace>/<name>/generation-<n>/`."""
    base = f"{output_uri.rstrip('/')}/{resource.namespace}/{resource.name}"
    if resource.uid:
        base += f"/{resource.uid}"
    return f"{base}/generation-{resource.generation}/"


# Cross-field rules the API server can check itself (CEL). Each mirrors a model validator above;
# tests/unit/test_api_validate.py evaluates them (cel-python) against the same corpus as the model.
CEL_RULES: dict[str, list[dict[str, str]]] = {
    "spec.dataset": [
        {
            "rule": "!has(self.minDurationSeconds) || !has(self.maxDurationSeconds) || "
            "self.minDurationSeconds < self.maxDurationSeconds",
            "message": "minDurationSeconds must be less than maxDurationSeconds",
        }
    ],
    "spec.training": [
        {
            "rule": "!(has(self.maxSteps) && has(self.epochs))",
            "message": "set maxSteps or epochs, not both",
        }
    ],
    "spec": [
        {
            "rule": "!has(self.engine) || self.engine != 'unsloth' || !has(self.resources) || "
            "!has(self.resources.gpus) || self.resources.gpus >= 1",
            "message": "engine 'unsloth' needs a GPU: set resources.gpus to 1 or more",
        },
        {
            "rule": "!has(self.engine) || self.engine != 'unsloth' || !has(self.resources) || "
            "!has(self.resources.gpus) || self.resources.gpus <= 1",
            "message": UNSLOTH_GPUS_MESSAGE,
        },
        {
            "rule": "!has(self.engine) || self.engine != 'unsloth' || !has(self.resources) || "
            "!has(self.resources.nodes) || self.resources.nodes <= 1",
            "message": UNSLOTH_NODES_MESSAGE,
        },
        {
            "rule": "!has(self.task) || self.task != 'translate' || "
            "(has(self.language) && self.language != 'en')",
            "message": "task 'translate' translates into English; language must not be 'en'",
        },
        {
            "rule": "!has(self.baseModel) || !self.baseModel.matches('"
            + ENGLISH_ONLY_PATTERN
            + "') || !has(self.language) || self.language == 'en'",
            "message": "baseModel is English-only (.en), so language must be 'en'; use a "
            "multilingual model such as " + DEFAULT_BASE_MODEL,
        },
    ],
}
