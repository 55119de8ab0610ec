"""Where the base model comes from: a Hugging Face id, or an `s3://` prefix (air-gapped).

An `s3://` baseModel is mirrored into a local folder through the ETag cache (a retry of the Job
downloads nothing that has not changed), and every later load of it uses
`local_files_only=True`, so an air-gapped cluster never touches the hub.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from wft_api.conditions import Reason
from wft_api.v1alpha1 import WhisperFineTuneSpec

from .errors import TrainerFailure
from .storage import S3Store


def is_local(source: str) -> bool:
    return Path(source).is_dir()


def resolve_base_model(spec: WhisperFineTuneSpec, store: S3Store, cache_dir: Path) -> str:
    """A local folder for an s3:// baseModel (downloaded), else the Hugging Face id as is."""
    source = spec.base_model
    if not source.startswith("s3://"):
        return source
    prefix = source if source.endswith("/") else source + "/"
    folder = Path(cache_dir) / "models" / hashlib.sha256(prefix.encode()).hexdigest()[:16]
    store.download_prefix(prefix, folder)
    if not (folder / "config.json").is_file():
        raise TrainerFailure(
            Reason.MODEL_LOAD_FAILED,
            f"spec.baseModel {source} holds no config.json: expected a folder written by "
            "save_pretrained (config.json, model weights, processor files)",
        )
    return str(folder)


def load_processor(source: str, spec: WhisperFineTuneSpec) -> Any:
    """The WhisperProcessor with the language/task prefix set (no timestamps)."""
    from transformers import WhisperProcessor

    try:
        processor = WhisperProcessor.from_pretrained(source, local_files_only=is_local(source))
    except (OSError, ValueError) as err:
        raise TrainerFailure(
            Reason.MODEL_LOAD_FAILED, f"cannot load the processor of {spec.base_model}: {err}"
        ) from err
    processor.tokenizer.set_prefix_tokens(
        language=spec.language, task=spec.task, predict_timestamps=False
    )
    return processor
