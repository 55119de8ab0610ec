"""What a finished run leaves under `<run_output_uri>`, and in what order.

adapter_config.json + adapter_model.safetensors (PEFT), the processor, metrics.json, the data
stage's report.json, a model card README.md, optionally merged/ (a 16-bit merged model) and
ctranslate2/ (the merged model for faster-whisper), and `_SUCCESS` last: a reader that sees
`_SUCCESS` sees a complete folder, and a folder with `_SUCCESS` is never written again.
`_SUCCESS` holds the run's record (namespace, name, uid, generation, spec hash): a later attempt
of the same run (a Job re-created after its TTL, a pod that died after publishing) finds it and
succeeds without training again; any other run refuses the folder (OutputExists).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from wft_api.conditions import Reason
from wft_api.identity import spec_hash
from wft_api.v1alpha1 import OutputSpec, TrainerConfig

from .errors import TrainerFailure
from .models.source import is_local
from .results import Export, RunMetrics, RunRecord
from .storage import SUCCESS as SUCCESS  # re-exported: the pipeline reads it here

log = logging.getLogger(__name__)


def run_record(config: TrainerConfig) -> RunRecord:
    """Who this run is: written into `_SUCCESS` (and metrics.json) when it finishes."""
    ref = config.resource
    return RunRecord(
        namespace=ref.namespace,
        name=ref.name,
        uid=ref.uid,
        generation=ref.generation,
        spec_hash=spec_hash(config.spec),
    )


def _same_run(found: dict[str, Any], mine: RunRecord) -> bool:
    """In a cluster the folder is the resource's uid and generation: a record with both is this
    run (even should the digest differ, a trainer upgrade adding a defaulted field). Without a
    uid (`wft train`) only the spec tells two runs of one generation folder apart."""
    if mine.uid:
        return bool(found.get("uid") == mine.uid and found.get("generation") == mine.generation)
    return not found.get("uid") and bool(found.get("specHash") == mine.spec_hash)


def finished_run(store: Any, config: TrainerConfig) -> dict[str, Any] | None:
    """The record of this run when its folder holds it finished; None when not finished yet.

    A folder holding another run's `_SUCCESS` is never written again: that is a permanent
    failure (OutputExists), with advice that works for where the run comes from.
    """
    run_uri = config.run_output_uri
    if not store.exists(run_uri + SUCCESS):
        return None
    try:
        found = json.loads(store.read_bytes(run_uri + SUCCESS) or b"{}")
    except ValueError:
        found = {}
    if not isinstance(found, dict):
        found = {}
    mine = run_record(config)
    if _same_run(found, mine):
        return found
    what = (
        f"spec hash {found['specHash']}, this spec's is {mine.spec_hash}"
        if found.get("specHash")
        else f"by an earlier trainer, of a spec it did not record; this spec's is {mine.spec_hash}"
    )
    if mine.uid:
        advice = (
            "change the spec (bumping spec.retrainNonce is enough): the new generation trains "
            "into a folder of its own"
        )
    else:
        advice = (
            "give this run a metadata.generation not used yet (or another metadata.name or "
            "spec.output.uri): each generation has a folder of its own"
        )
    raise TrainerFailure(
        Reason.OUTPUT_EXISTS,
        f"{run_uri} already holds a finished run of another spec ({what}) and is never "
        f"overwritten; {advice}",
    )


def write_adapter(model: Any, processor: Any, base_model: str, model_dir: str, dest: Path) -> None:
    """The adapter (pointing at the spec's base model, not our local cache) and the processor."""
    model.save_pretrained(str(dest))
    # Point the adapter at what the spec named (an s3:// prefix or a hub id), not at our cache.
    cfg_path = dest / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model_name_or_path"] = base_model
    cfg_path.write_text(json.dumps(cfg, indent=2))
    processor.save_pretrained(str(dest))
    normalizer = Path(model_dir) / "normalizer.json"
    if normalizer.is_file() and not (dest / "normalizer.json").exists():
        shutil.copy(normalizer, dest / "normalizer.json")


def write_exports(
    output: OutputSpec, model_dir: str, processor: Any, staging: Path, scratch: Path
) -> dict[str, Export]:
    """The merged model and the faster-whisper folder that `output` asks for, beside the adapter
    already in `staging`; returns what was written, with sizes (metrics.json `exports`)."""
    exports = {"adapter": Export(path="", format="peft", bytes=_bytes(staging, recursive=False))}
    if not (output.merged_model or output.ctranslate2):
        return exports
    merged = staging / "merged" if output.merged_model else scratch / "merged"
    write_merged(model_dir, staging, processor, merged)
    if output.merged_model:
        exports["merged"] = Export(path="merged/", format="transformers", bytes=_bytes(merged))
    if output.ctranslate2:
        from .models.ctranslate2_export import export_ctranslate2

        quantization = output.ctranslate2_quantization
        size = export_ctranslate2(merged, processor, staging / "ctranslate2", quantization)
        exports["ctranslate2"] = Export(
            path="ctranslate2/", format="ctranslate2", quantization=quantization, bytes=size
        )
        if not output.merged_model:
            shutil.rmtree(merged, ignore_errors=True)
    return exports


def _bytes(folder: Path, recursive: bool = True) -> int:
    files = folder.rglob("*") if recursive else folder.iterdir()
    return sum(f.stat().st_size for f in files if f.is_file())


def write_merged(model_dir: str, adapter_dir: Path, processor: Any, dest: Path) -> None:
    """Merge into a fresh 16-bit load of the base: merging into 4-bit weights would round the
    update away, and a 4-bit export is not what `from_pretrained` users expect."""
    from peft import PeftModel
    from transformers import WhisperForConditionalGeneration

    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float16
    base = WhisperForConditionalGeneration.from_pretrained(
        model_dir, dtype=dtype, local_files_only=is_local(model_dir)
    )
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(str(dest))
    processor.save_pretrained(str(dest))
    del merged, base


def model_card(config: TrainerConfig, metrics: RunMetrics) -> str:
    spec, t = config.spec, config.spec.training
    base, final, data = metrics.baseline, metrics.final, metrics.dataset

    def pct(v: Any) -> str:
        return f"{100 * v:.2f}%" if isinstance(v, int | float) else "n/a"

    return f"""---
base_model: {spec.base_model}
library_name: peft
tags: [whisper, lora, automatic-speech-recognition, wft]
language: [{spec.language}]
---
# LoRA adapter for {spec.base_model}

Trained by whisper-finetune for `{config.resource.namespace}/{config.resource.name}`,
generation {config.resource.generation}{_incarnation(config)}; spec hash
`{spec_hash(spec)}`{_resumed(metrics)}.

{_loading(spec, metrics)}

## Data
- dataset: `{spec.dataset.uri}` (format: {data.format or spec.dataset.format})
- training samples: {data.samples}, eval samples: {data.eval_samples},
  hours: {data.hours}, skipped: {data.skipped}
- language: {spec.language}, task: {spec.task}, normalization: {spec.preprocessing.normalization}

## Training
- engine: {metrics.engine}, quantization: {metrics.quantization}
- LoRA: rank {spec.lora.rank}, alpha {spec.lora.alpha}, dropout {spec.lora.dropout},
  targets {", ".join(spec.lora.target_modules)}
- steps: {metrics.steps}, batch size: {metrics.batch_size}, gradient accumulation:
  {t.gradient_accumulation_steps}, learning rate: {t.learning_rate} ({t.lr_scheduler}, warm-up
  {t.warmup_steps}), optimizer: {t.optimizer}, seed: {t.seed}

## Word error rate (eval split)
| | raw | normalized |
|---|---|---|
| base model | {pct(base.wer)} | {pct(base.wer_normalized)} |
| fine-tuned | {pct(final.wer)} | {pct(final.wer_normalized)} |
{_general_rows(metrics, pct)}{_serving(spec, metrics)}"""


def _incarnation(config: TrainerConfig) -> str:
    return f" (uid `{config.resource.uid}`)" if config.resource.uid else ""


def _resumed(metrics: RunMetrics) -> str:
    step = metrics.resumed_from
    return f", resumed from its own checkpoint at step {step}" if step else ""


def _loading(spec: Any, metrics: RunMetrics) -> str:
    load = (
        'Load it with `PeftModel.from_pretrained(WhisperForConditionalGeneration.from_pretrained("'
        + "{base}"
        + '"), "<this folder>")`.'
    )
    if not metrics.base_model or "faster-whisper" not in metrics.base_model.loaded_as:
        return load.format(base=spec.base_model)
    return (
        f"The base, `{spec.base_model}`, is a faster-whisper folder: convert it first with "
        f"`wft model import {spec.base_model} ./base` (the trainer did the same), then\n"
        + load.format(base="./base")
    )


def _general_rows(metrics: RunMetrics, pct: Any) -> str:
    base, final = metrics.baseline_general, metrics.final_general
    if not base or not final:
        return ""
    return f"""
General speech (`dataset.generalEvalManifest`, {base.samples} samples, not trained on):
| | raw | normalized |
|---|---|---|
| base model | {pct(base.wer)} | {pct(base.wer_normalized)} |
| fine-tuned | {pct(final.wer)} | {pct(final.wer_normalized)} |
"""


def _serving(spec: Any, metrics: RunMetrics) -> str:
    export = metrics.exports.get("ctranslate2")
    if not export:
        return ""
    language = "" if metrics.english_only else f', language="{spec.language}"'
    quantization = export.quantization or ""
    compute = "int8" if quantization.startswith("int8") else "default"
    return f"""
## Serving with faster-whisper
`ctranslate2/` ({quantization}, {export.bytes / 1e6:.0f} MB) is this model merged
and converted for faster-whisper:

```python
from faster_whisper import WhisperModel
model = WhisperModel("<this folder>/ctranslate2", device="cpu", compute_type="{compute}")
segments, info = model.transcribe("audio.wav"{language})
```
"""


def publish(
    store: Any,
    run_uri: str,
    staging: Path,
    config: TrainerConfig,
    metrics: RunMetrics,
    report: dict[str, Any] | str | None,
) -> bool:
    """Upload the staged folder, then metrics, report and card, then `_SUCCESS` with the run's
    record. False (nothing written) when another attempt of this run finished it meanwhile."""
    if finished_run(store, config) is not None:
        log.info("%s was finished meanwhile by another attempt of this run", run_uri)
        return False
    metrics.run = record = run_record(config)
    (staging / "metrics.json").write_text(metrics.to_json())
    if report is not None:
        text = report if isinstance(report, str) else json.dumps(report, indent=2)
        (staging / "report.json").write_text(text)
    (staging / "README.md").write_text(model_card(config, metrics))
    from .checkpoint import with_retries

    # The one upload that must succeed: retried with backoff like a checkpoint, then fatal
    # (the Job's retry resumes from the last checkpoint).
    with_retries(lambda: store.upload_dir(staging, run_uri), f"uploading the results to {run_uri}")
    success = json.dumps(record.model_dump(by_alias=True), indent=2).encode()
    with_retries(lambda: store.put_bytes(run_uri + SUCCESS, success), f"writing {run_uri}{SUCCESS}")
    log.info("results written to %s", run_uri)
    return True
