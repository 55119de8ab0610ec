"""The fine-tuned model as a faster-whisper (CTranslate2) folder (`spec.output.ctranslate2`).

Most teams serve Whisper with faster-whisper: several times faster than transformers and with
int8 weights on the CPU. CTranslate2's own `TransformersConverter` does the conversion, from
the merged 16-bit model (base + adapter; a LoRA cannot be served on its own), and the folder
gets the two files faster-whisper reads beside model.bin: tokenizer.json (without it
faster-whisper fetches one from the hub) and preprocessor_config.json (the mel bins: 128 for
large-v3, where faster-whisper would otherwise assume 80).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from wft_api.conditions import Reason

from ..errors import TrainerFailure

log = logging.getLogger(__name__)

COPIED_FILES = ("tokenizer.json", "preprocessor_config.json")


def require_exporter() -> Any:
    """CTranslate2's converter, or ExportFailed in words: checked before the data stage, so an
    image without the package fails in seconds rather than after the training."""
    try:
        from ctranslate2.converters import TransformersConverter
    except ImportError as err:
        raise TrainerFailure(
            Reason.EXPORT_FAILED,
            "spec.output.ctranslate2 needs the ctranslate2 package in the trainer image "
            f"(pip install 'whisper-finetune[serving]'): {err}",
        ) from err
    return TransformersConverter


def export_ctranslate2(merged_dir: Path, processor: Any, dest: Path, quantization: str) -> int:
    """Convert the merged model at `merged_dir` into `dest`; return the folder's size in bytes.

    Any failure is a TrainerFailure (ExportFailed): the run then fails before _SUCCESS, so a
    finished run always has every export its spec asked for.
    """
    converter_class = require_exporter()
    # transformers 5 writes the feature extractor into processor_config.json; faster-whisper
    # and CTranslate2 read the older preprocessor_config.json.
    processor.feature_extractor.save_pretrained(str(merged_dir))
    missing = [f for f in COPIED_FILES if not (merged_dir / f).is_file()]
    if missing:
        raise TrainerFailure(
            Reason.EXPORT_FAILED, f"the merged model lacks {', '.join(missing)} for faster-whisper"
        )
    try:
        converter = converter_class(str(merged_dir), copy_files=list(COPIED_FILES))
        converter.convert(str(dest), quantization=quantization, force=True)
    except Exception as err:  # the converter's errors are not documented: all of them, named
        log.exception("CTranslate2's converter failed")
        raise TrainerFailure(
            Reason.EXPORT_FAILED,
            f"CTranslate2 could not convert the fine-tuned model ({quantization}): "
            f"{type(err).__name__}: {err}",
        ) from err
    size = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
    log.info("wrote the faster-whisper export %s (%s, %.1f MB)", dest, quantization, size / 1e6)
    return size
