"""What a finished run leaves under `<run_output_uri>`, and in what order.

adapter_config.json + adapter_model.safetensors (PEFT), the processor, metrics.json, the data
stage's report.json, a model card README.md, optionally merged/ (a 16-bit merged model) and
ctranslate2/ (the merged model for faster-whisper), and `_SUCCESS` last: a reader that sees
`_SUCCESS` sees a complete folder, and a folder with `_SUCCESS` is never written again.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from wft_api.conditions import Reason
from wft_api.v1alpha1 import OutputSpec, TrainerConfig

from .errors import TrainerFailure
from .models.source import is_local

log = logging.getLogger(__name__)

SUCCESS = "_SUCCESS"


def refuse_if_finished(store: Any, run_uri: str) -> None:
    if store.exists(run_uri + SUCCESS):
        raise TrainerFailure(
            Reason.TRAINER_ERROR,
            f"{run_uri} already holds a finished run ({SUCCESS} exists) and is never "
            "overwritten; change the spec or spec.retrainNonce to train a new generation",
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
) -> dict[str, dict[str, Any]]:
    """The merged model and the faster-whisper folder that `output` asks for, beside the adapter
    already in `staging`; returns what was written, with sizes (metrics.json `exports`)."""
    exports: dict[str, dict[str, Any]] = {
        "adapter": {"path": "", "format": "peft", "bytes": _bytes(staging, recursive=False)}
    }
    if not (output.merged_model or output.ctranslate2):
        return exports
    merged = staging / "merged" if output.merged_model else scratch / "merged"
    write_merged(model_dir, staging, processor, merged)
    if output.merged_model:
        exports["merged"] = {"path": "merged/", "format": "transformers", "bytes": _bytes(merged)}
    if output.ctranslate2:
        from .models.ctranslate2_export import export_ctranslate2

        quantization = output.ctranslate2_quantization
        size = export_ctranslate2(merged, processor, staging / "ctranslate2", quantization)
        exports["ctranslate2"] = {
            "path": "ctranslate2/",
            "format": "ctranslate2",
            "quantization": quantization,
            "bytes": size,
        }
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


def model_card(config: TrainerConfig, metrics: dict[str, Any]) -> str:
    spec, t = config.spec, config.spec.training
    base, final = metrics.get("baseline", {}), metrics.get("final", {})
    data = metrics.get("dataset", {})

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
generation {config.resource.generation}.

{_loading(spec, metrics)}

## Data
- dataset: `{spec.dataset.uri}` (format: {data.get("format", spec.dataset.format)})
- training samples: {data.get("samples", "n/a")}, eval samples: {data.get("evalSamples", "n/a")},
  hours: {data.get("hours", "n/a")}, skipped: {data.get("skipped", "n/a")}
- language: {spec.language}, task: {spec.task}, normalization: {spec.preprocessing.normalization}

## Training
- engine: {metrics.get("engine")}, quantization: {metrics.get("quantization")}
- LoRA: rank {spec.lora.rank}, alpha {spec.lora.alpha}, dropout {spec.lora.dropout},
  targets {", ".join(spec.lora.target_modules)}
- steps: {metrics.get("steps")}, batch size: {metrics.get("batchSize")}, gradient accumulation:
  {t.gradient_accumulation_steps}, learning rate: {t.learning_rate} ({t.lr_scheduler}, warm-up
  {t.warmup_steps}), optimizer: {t.optimizer}, seed: {t.seed}

## Word error rate (eval split)
| | raw | normalized |
|---|---|---|
| base model | {pct(base.get("wer"))} | {pct(base.get("werNormalized"))} |
| fine-tuned | {pct(final.get("wer"))} | {pct(final.get("werNormalized"))} |
{_general_rows(metrics, pct)}{_serving(spec, metrics)}"""


def _loading(spec: Any, metrics: dict[str, Any]) -> str:
    load = (
        'Load it with `PeftModel.from_pretrained(WhisperForConditionalGeneration.from_pretrained("'
        + "{base}"
        + '"), "<this folder>")`.'
    )
    if "faster-whisper" not in (metrics.get("baseModel") or {}).get("loadedAs", ""):
        return load.format(base=spec.base_model)
    return (
        f"The base, `{spec.base_model}`, is a faster-whisper folder: convert it first with "
        f"`wft model import {spec.base_model} ./base` (the trainer did the same), then\n"
        + load.format(base="./base")
    )


def _general_rows(metrics: dict[str, Any], pct: Any) -> str:
    base, final = metrics.get("baselineGeneral"), metrics.get("finalGeneral")
    if not base or not final:
        return ""
    return f"""
General speech (`dataset.generalEvalManifest`, {base.get("samples")} samples, not trained on):
| | raw | normalized |
|---|---|---|
| base model | {pct(base.get("wer"))} | {pct(base.get("werNormalized"))} |
| fine-tuned | {pct(final.get("wer"))} | {pct(final.get("werNormalized"))} |
"""


def _serving(spec: Any, metrics: dict[str, Any]) -> str:
    export = (metrics.get("exports") or {}).get("ctranslate2")
    if not export:
        return ""
    language = "" if metrics.get("englishOnly") else f', language="{spec.language}"'
    compute = "int8" if export["quantization"].startswith("int8") else "default"
    return f"""
## Serving with faster-whisper
`ctranslate2/` ({export["quantization"]}, {export["bytes"] / 1e6:.0f} MB) is this model merged
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
    metrics: dict[str, Any],
    report: dict[str, Any] | str | None,
) -> str:
    """Upload the staged folder, then metrics, report and card, then `_SUCCESS`."""
    refuse_if_finished(store, run_uri)  # another attempt may have finished meanwhile
    (staging / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if report is not None:
        text = report if isinstance(report, str) else json.dumps(report, indent=2)
        (staging / "report.json").write_text(text)
    (staging / "README.md").write_text(model_card(config, metrics))
    store.upload_dir(staging, run_uri)
    store.put_bytes(run_uri + SUCCESS, b"")
    log.info("results written to %s", run_uri)
    return run_uri
