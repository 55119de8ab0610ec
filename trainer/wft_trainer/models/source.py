"""Where the base model comes from, and what the trainer makes of it.

`spec.baseModel` is one of:
- a Hugging Face id. OpenAI's checkpoints (`openai/whisper-*`) have their processor built in
  (`vocab.py`), so the data stage needs no hub; the weights do, and with no hub the run fails in
  seconds naming the field (`require_hub`), not after minutes of retries;
- an `s3://` prefix or a local folder holding a transformers `save_pretrained` folder or a
  faster-whisper (CTranslate2) folder. The small files come first, so that an English-only model
  asked for another language is refused before the weights are fetched. A CTranslate2 folder is
  converted once (`ctranslate2_import.py`); the result is kept on local disk and, when
  `spec.dataset.cacheUri` is set, in S3, so that a retried Job on a fresh pod downloads the
  converted model instead of converting again.

Every later load uses `local_files_only=True` for folders: an air-gapped cluster never touches
the hub.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from wft_api.conditions import Reason
from wft_api.v1alpha1 import WhisperFineTuneSpec

from ..errors import TrainerFailure
from ..storage import S3Object, S3Store, parse_s3_uri
from .ctranslate2_file import ModelFileError
from .ctranslate2_import import MODEL_FILE, TOKENIZER_FILE, import_ctranslate2
from .vocab import Vocabulary, builtin_processor, is_english_only_id

log = logging.getLogger(__name__)

# Bump when the conversion's output changes: every cached conversion is then redone.
IMPORT_VERSION = 1
DONE = "_SUCCESS"
_WEIGHT_SUFFIXES = (".bin", ".safetensors", ".pt", ".pth", ".h5", ".msgpack", ".onnx")
HUB_PROBE_TIMEOUT_S = 5.0


@dataclass
class BaseModel:
    """The base model as the trainer loads it."""

    path: str  # a local transformers folder, or a Hugging Face id
    english_only: bool
    origin: str  # in words, for logs, metrics.json and the model card
    notes: list[str] = field(default_factory=list)

    @property
    def is_local(self) -> bool:
        return Path(self.path).is_dir()

    def prompt(self, spec: WhisperFineTuneSpec) -> tuple[str | None, str | None]:
        """(language, task) of the decoder prompt: none for an English-only model, whose
        prompt is <|startoftranscript|><|notimestamps|>."""
        return (None, None) if self.english_only else (spec.language, spec.task)


def is_local(source: str) -> bool:
    return Path(source).is_dir()


def resolve_base_model(spec: WhisperFineTuneSpec, store: S3Store, cache_dir: Path) -> BaseModel:
    """A local transformers folder for an s3:// or local baseModel, else the hub id as is."""
    source = spec.base_model
    if source.startswith("s3://"):
        base = _from_s3(spec, store, Path(cache_dir))
    elif is_local(source):
        base = _from_folder(spec, Path(source), Path(cache_dir))
    else:
        english_only = is_english_only_id(source)
        _require_language(spec, english_only, f"{source} (an English-only checkpoint)")
        base = BaseModel(path=source, english_only=english_only, origin="Hugging Face id")
    log.info("base model %s: %s (%s)", source, base.path, base.origin)
    return base


def load_processor(base: BaseModel, spec: WhisperFineTuneSpec) -> Any:
    """The WhisperProcessor with the decoder prompt set (no timestamps)."""
    from transformers import WhisperProcessor

    processor = None if base.is_local else builtin_processor(base.path)
    if processor is None:
        try:
            processor = WhisperProcessor.from_pretrained(base.path, local_files_only=base.is_local)
        except (OSError, ValueError) as err:
            raise TrainerFailure(
                Reason.MODEL_LOAD_FAILED, f"cannot load the processor of {spec.base_model}: {err}"
            ) from err
    language, task = base.prompt(spec)
    processor.tokenizer.set_prefix_tokens(language=language, task=task, predict_timestamps=False)
    return processor


def require_hub(base: BaseModel, spec: WhisperFineTuneSpec) -> None:
    """A hub id needs the hub (or the model in the local Hugging Face cache): say so in seconds.

    Without this, transformers retries for minutes before giving up with a message about
    connections that names neither the field nor a way out.
    """
    if base.is_local:
        return
    from huggingface_hub import constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(base.path, "config.json"), str):
        return  # cached: from_pretrained finds it offline too
    endpoint = urlparse(constants.ENDPOINT)
    why = ""
    if constants.HF_HUB_OFFLINE:
        why = "HF_HUB_OFFLINE is set"
    else:
        host = endpoint.hostname or "huggingface.co"
        port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
        try:
            socket.create_connection((host, port), timeout=HUB_PROBE_TIMEOUT_S).close()
        except OSError as err:
            why = f"{host}:{port} cannot be reached ({err})"
    if why:
        raise TrainerFailure(
            Reason.MODEL_LOAD_FAILED,
            f"spec.baseModel {spec.base_model} is a Hugging Face id, but the hub is not "
            f"available to the trainer: {why}. Give an s3:// prefix (or a folder) holding the "
            "model instead: a transformers save_pretrained folder, or a faster-whisper "
            "(CTranslate2) folder as is (`wft model import` converts one ahead of time)",
        )


# -- s3:// -------------------------------------------------------------------------------------


def _from_s3(spec: WhisperFineTuneSpec, store: S3Store, cache_dir: Path) -> BaseModel:
    source = spec.base_model
    prefix = source if source.endswith("/") else source + "/"
    objects = [o for o in store.list(prefix) if not o.key.endswith("/")]
    if not objects:
        raise TrainerFailure(
            Reason.MODEL_LOAD_FAILED,
            f"spec.baseModel: no objects under {prefix} (is the URI right?)",
        )
    bucket, key_prefix = parse_s3_uri(prefix)
    by_name = {o.key[len(key_prefix) :]: o for o in objects}
    folder = cache_dir / "s3" / _digest(prefix)
    small = {n: o for n, o in by_name.items() if not n.endswith(_WEIGHT_SUFFIXES)}
    _fetch(store, bucket, key_prefix, small, folder)  # config and tokenizer first: cheap checks

    if MODEL_FILE in by_name:  # CTranslate2
        english_only = _ctranslate2_english_only(folder, source)
        _require_language(spec, english_only, source)
        key = _digest(json.dumps([IMPORT_VERSION, sorted((n, o.etag) for n, o in by_name.items())]))
        converted = cache_dir / "converted" / key
        if not (converted / DONE).exists():
            cache = _conversion_cache(spec, key)
            if not (cache and _download_conversion(store, cache, converted)):
                _fetch(store, bucket, key_prefix, by_name, folder)
                _convert(folder, converted, source)
                if cache:
                    _upload_conversion(store, converted, cache)
        return BaseModel(
            path=str(converted),
            english_only=english_only,
            origin="faster-whisper (CTranslate2) folder in S3, converted to transformers",
        )
    config = folder / "config.json"
    if not config.is_file():
        raise TrainerFailure(
            Reason.MODEL_LOAD_FAILED,
            f"spec.baseModel {source} holds neither config.json (a transformers save_pretrained "
            f"folder) nor {MODEL_FILE} (a faster-whisper/CTranslate2 folder); found: "
            f"{', '.join(sorted(by_name)[:8])}",
        )
    english_only = _transformers_english_only(config, source)
    _require_language(spec, english_only, source)
    _fetch(store, bucket, key_prefix, by_name, folder)
    return BaseModel(
        path=str(folder), english_only=english_only, origin="transformers folder in S3"
    )


def _fetch(
    store: S3Store, bucket: str, key_prefix: str, objects: dict[str, S3Object], folder: Path
) -> None:
    def one(item: tuple[str, S3Object]) -> None:
        name, obj = item
        store.download(f"s3://{bucket}/{obj.key}", folder / name, etag=obj.etag)

    list(store.map_parallel(one, sorted(objects.items())))


def _conversion_cache(spec: WhisperFineTuneSpec, key: str) -> str | None:
    cache_uri = spec.dataset.cache_uri
    return f"{cache_uri.rstrip('/')}/models/{key}/" if cache_uri else None


def _download_conversion(store: S3Store, cache: str, dest: Path) -> bool:
    if not store.exists(cache + DONE):
        return False
    partial = dest.with_name(dest.name + ".download")
    shutil.rmtree(partial, ignore_errors=True)
    store.download_prefix(cache, partial)
    shutil.rmtree(dest, ignore_errors=True)
    partial.rename(dest)
    log.info("converted base model from the cache %s", cache)
    return True


def _upload_conversion(store: S3Store, folder: Path, cache: str) -> None:
    """Best effort: a cache that cannot be written costs the next attempt a conversion."""
    try:
        store.upload_dir(folder, cache)  # _SUCCESS last: readers trust it
        store.put_bytes(cache + DONE, b"")
    except TrainerFailure as err:
        log.warning("could not write the converted model to %s: %s", cache, err.message)


# -- local folders -----------------------------------------------------------------------------


def _from_folder(spec: WhisperFineTuneSpec, folder: Path, cache_dir: Path) -> BaseModel:
    source = spec.base_model
    if (folder / MODEL_FILE).is_file():
        english_only = _ctranslate2_english_only(folder, source)
        _require_language(spec, english_only, source)
        stat = (folder / MODEL_FILE).stat()
        key = _digest(
            json.dumps([IMPORT_VERSION, str(folder.resolve()), stat.st_size, stat.st_mtime_ns])
        )
        converted = cache_dir / "converted" / key
        if not (converted / DONE).exists():
            _convert(folder, converted, source)
        return BaseModel(
            path=str(converted),
            english_only=english_only,
            origin="faster-whisper (CTranslate2) folder, converted to transformers",
        )
    config = folder / "config.json"
    if not config.is_file():
        raise TrainerFailure(
            Reason.MODEL_LOAD_FAILED,
            f"spec.baseModel {source} holds neither config.json (a transformers save_pretrained "
            f"folder) nor {MODEL_FILE} (a faster-whisper/CTranslate2 folder)",
        )
    english_only = _transformers_english_only(config, source)
    _require_language(spec, english_only, source)
    return BaseModel(path=str(folder), english_only=english_only, origin="transformers folder")


# -- shared ------------------------------------------------------------------------------------


def _convert(src: Path, dest: Path, source: str) -> None:
    partial = dest.with_name(dest.name + f".partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        imported = import_ctranslate2(src, partial)
    except ModelFileError as err:
        shutil.rmtree(partial, ignore_errors=True)
        raise TrainerFailure(Reason.MODEL_LOAD_FAILED, f"spec.baseModel {source}: {err}") from err
    (partial / DONE).write_text(imported.describe())
    shutil.rmtree(dest, ignore_errors=True)
    partial.rename(dest)


def _ctranslate2_english_only(folder: Path, source: str) -> bool:
    """From tokenizer.json (2 MB) rather than model.bin: <|notimestamps|> is the last special
    token, so its id gives the vocabulary (1501 timestamps follow it)."""
    path = folder / TOKENIZER_FILE
    if not path.is_file():
        return False  # decided by the weights' shape at conversion; refused there if it clashes
    try:
        added = json.loads(path.read_text()).get("added_tokens", [])
        ids = {t["content"]: int(t["id"]) for t in added}
        return not Vocabulary.of_size(ids["<|notimestamps|>"] + 1502).multilingual
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise TrainerFailure(
            Reason.MODEL_LOAD_FAILED,
            f"spec.baseModel {source}: {TOKENIZER_FILE} is not a Whisper tokenizer ({err})",
        ) from err


def _transformers_english_only(config: Path, source: str) -> bool:
    try:
        data = json.loads(config.read_text())
        return int(data.get("vocab_size", 51865)) < 51865
    except (ValueError, TypeError, AttributeError) as err:
        raise TrainerFailure(
            Reason.MODEL_LOAD_FAILED, f"spec.baseModel {source}: config.json is not JSON ({err})"
        ) from err


def _require_language(spec: WhisperFineTuneSpec, english_only: bool, what: str) -> None:
    if english_only and (spec.language != "en" or spec.task != "transcribe"):
        raise TrainerFailure(
            Reason.MODEL_LOAD_FAILED,
            f"spec.baseModel {what} is English-only: it transcribes English and nothing else, but "
            f"spec.language is {spec.language!r} and spec.task {spec.task!r}. Use a multilingual "
            "model (openai/whisper-large-v3, or one without the .en suffix), or language 'en' "
            "and task 'transcribe'",
        )


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]
