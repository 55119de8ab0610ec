"""Where the base model comes from, and what the trainer makes of it.

`spec.baseModel` is one of:
- a Hugging Face id. OpenAI's checkpoints (`openai/whisper-*`) have their processor built in
  (`vocab.py`), so the data stage needs no hub; the weights do, and with no hub the run fails in
  seconds naming the field (`require_hub`), not after minutes of retries;
- an `s3://` prefix or a local folder holding a transformers `save_pretrained` folder or a
  faster-whisper (CTranslate2) folder. From S3 the small files come first, so that an
  English-only model asked for another language is refused before the weights are fetched. A
  CTranslate2 folder is converted once (`ctranslate2_import.py`) and the result kept on local
  disk; for an `s3://` source also under `spec.dataset.cacheUri` when it is set, so that a
  retried Job on a fresh pod downloads the converted model instead of converting again.

Whether the model is English-only is read from its files as early as they allow (the `.en`
name of a hub id, config.json, tokenizer.json) and settled by its tokenizer (`load_processor`).
Every load of a folder uses `local_files_only=True`: an air-gapped cluster never touches the hub.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wft_api.conditions import Reason
from wft_api.v1alpha1 import WhisperFineTuneSpec

from ..errors import TrainerFailure
from ..storage import SUCCESS, S3Store, parse_s3_uri
from .ctranslate2_file import ModelFileError
from .ctranslate2_import import (
    TOKENIZER_FILE,
    added_token_ids,
    import_ctranslate2,
    is_ctranslate2_layout,
)
from .vocab import NUM_TIMESTAMPS, builtin_processor, is_english_only_id, set_decoder_prompt

log = logging.getLogger(__name__)

# Bump when the conversion's output changes: every cached conversion is then redone.
IMPORT_VERSION = 1
_WEIGHT_SUFFIXES = (".bin", ".safetensors", ".pt", ".pth", ".h5", ".msgpack", ".onnx")
HUB_PROBE_TIMEOUT_S = 5.0


@dataclass
class BaseModel:
    """The base model as the trainer loads it."""

    path: str  # a local transformers folder, or a Hugging Face id
    english_only: bool  # from the files or the name; settled by load_processor's tokenizer
    origin: str  # in words, for logs, metrics.json and the model card

    @property
    def is_local(self) -> bool:
        return Path(self.path).is_dir()

    @property
    def converted(self) -> bool:
        return "faster-whisper" in self.origin

    def prompt(self, spec: WhisperFineTuneSpec) -> tuple[str | None, str | None]:
        """(language, task) for generate(): none for an English-only model, whose prompt is
        <|startoftranscript|><|notimestamps|>."""
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
    elif source.startswith(("/", "./", "../")):
        raise TrainerFailure(
            Reason.MODEL_LOAD_FAILED,
            f"spec.baseModel {source}: no such folder in the trainer's file system (a path must "
            "be a folder in the image or a mounted volume; an s3:// prefix works anywhere)",
        )
    else:
        english_only = is_english_only_id(source)
        _require_language(spec, english_only, f"{source} (an English-only checkpoint)")
        base = BaseModel(path=source, english_only=english_only, origin="Hugging Face id")
    log.info("base model %s: %s (%s)", source, base.path, base.origin)
    return base


def load_processor(base: BaseModel, spec: WhisperFineTuneSpec) -> Any:
    """The WhisperProcessor with the decoder prompt set. Its tokenizer settles whether the
    model is English-only (a hub model fine-tuned from `*.en` need not say so in its name)."""
    from transformers import WhisperProcessor

    processor = None if base.is_local else builtin_processor(base.path)
    if processor is None:
        try:
            processor = WhisperProcessor.from_pretrained(base.path, local_files_only=base.is_local)
        except (OSError, ValueError) as err:
            raise TrainerFailure(
                Reason.MODEL_LOAD_FAILED, f"cannot load the processor of {spec.base_model}: {err}"
            ) from err
    base.english_only = not set_decoder_prompt(processor.tokenizer, spec.language, spec.task)
    _require_language(spec, base.english_only, spec.base_model)
    return processor


def require_hub(base: BaseModel, spec: WhisperFineTuneSpec) -> None:
    """A hub id needs the hub (or the model in the local Hugging Face cache): say so in seconds.

    Without this, transformers retries for minutes before giving up with a message about
    connections that names neither the field nor a way out. The probe goes through
    huggingface_hub's own HTTP session, so a proxy it would use is used here too.
    """
    if base.is_local:
        return
    import httpx
    from huggingface_hub import constants, get_session, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(base.path, "config.json"), str):
        return  # cached: from_pretrained finds it offline too
    why = ""
    if constants.HF_HUB_OFFLINE:
        why = "HF_HUB_OFFLINE is set"
    else:
        url = f"{constants.ENDPOINT}/api/models/{base.path}"
        try:
            get_session().head(url, timeout=HUB_PROBE_TIMEOUT_S)  # any answer will do
        except (httpx.HTTPError, OSError) as err:
            why = f"{constants.ENDPOINT} cannot be reached ({err})"
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
    _, key_prefix = parse_s3_uri(prefix)
    objects = {o.key[len(key_prefix) :]: o for o in store.list(prefix) if not o.key.endswith("/")}
    if not objects:
        raise TrainerFailure(
            Reason.MODEL_LOAD_FAILED,
            f"spec.baseModel: no objects under {prefix} (is the URI right?)",
        )
    folder = cache_dir / "s3" / _digest(prefix)

    def small(rel: str) -> bool:
        return not rel.endswith(_WEIGHT_SUFFIXES)

    store.download_prefix(prefix, folder, select=small)  # config and tokenizer: cheap checks
    english_only = _english_only_files(folder, source)
    _require_language(spec, english_only, source)
    if not is_ctranslate2_layout(objects):
        _require_transformers_folder(folder, source, sorted(objects))
        store.download_prefix(prefix, folder)
        return BaseModel(str(folder), english_only, origin="transformers folder in S3")

    key = _digest(json.dumps([IMPORT_VERSION, sorted((k, o.etag) for k, o in objects.items())]))
    converted = cache_dir / "converted" / key
    cache = (
        f"{spec.dataset.cache_uri.rstrip('/')}/models/{key}/" if spec.dataset.cache_uri else None
    )
    if (converted / SUCCESS).exists():
        pass
    elif cache and store.get_folder(cache, converted, SUCCESS):
        log.info("converted base model from the cache %s", cache)
    else:
        store.download_prefix(prefix, folder)
        _convert(folder, converted, source)
        if cache:
            try:  # best effort: a cache that cannot be written costs the next attempt a convert
                store.put_folder(converted, cache, SUCCESS)
            except TrainerFailure as err:
                log.warning("could not write the converted model to %s: %s", cache, err.message)
    return _converted(spec, converted, "faster-whisper (CTranslate2) folder in S3")


# -- local folders -----------------------------------------------------------------------------


def _from_folder(spec: WhisperFineTuneSpec, folder: Path, cache_dir: Path) -> BaseModel:
    source = spec.base_model
    english_only = _english_only_files(folder, source)
    _require_language(spec, english_only, source)
    names = sorted(p.name for p in folder.iterdir())
    if not is_ctranslate2_layout(names):
        _require_transformers_folder(folder, source, names)
        return BaseModel(str(folder), english_only, origin="transformers folder")
    # Every file counts: config.json's suppress lists and alignment heads go into the result.
    stats = sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in folder.iterdir())
    key = _digest(json.dumps([IMPORT_VERSION, str(folder.resolve()), stats]))
    converted = cache_dir / "converted" / key
    if not (converted / SUCCESS).exists():
        _convert(folder, converted, source)
    return _converted(spec, converted, "faster-whisper (CTranslate2) folder")


# -- shared ------------------------------------------------------------------------------------


def _converted(spec: WhisperFineTuneSpec, converted: Path, what: str) -> BaseModel:
    """The converted model, checked once more: its weights' own vocabulary says whether it is
    English-only when the source had no tokenizer.json to say so earlier."""
    english_only = _english_only_files(converted, spec.base_model)
    _require_language(spec, english_only, spec.base_model)
    return BaseModel(str(converted), english_only, origin=f"{what}, converted to transformers")


def _convert(src: Path, dest: Path, source: str) -> None:
    partial = dest.with_name(dest.name + f".partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        imported = import_ctranslate2(src, partial)
    except ModelFileError as err:
        shutil.rmtree(partial, ignore_errors=True)
        raise TrainerFailure(Reason.MODEL_LOAD_FAILED, f"spec.baseModel {source}: {err}") from err
    (partial / SUCCESS).write_text(imported.describe())
    shutil.rmtree(dest, ignore_errors=True)
    partial.rename(dest)


def _require_transformers_folder(folder: Path, source: str, found: list[str]) -> None:
    if not (folder / "config.json").is_file():
        raise TrainerFailure(
            Reason.MODEL_LOAD_FAILED,
            f"spec.baseModel {source} holds neither config.json (a transformers save_pretrained "
            "folder) nor model.bin (a faster-whisper/CTranslate2 folder); found: "
            f"{', '.join(found[:8]) or 'nothing'}",
        )


def _english_only_files(folder: Path, source: str) -> bool:
    """What the small files say: a transformers config's vocab_size, else tokenizer.json's
    <|notimestamps|> (the last special token; 1501 timestamps follow it). False when neither
    says: the tokenizer settles it later (load_processor)."""
    try:
        config = folder / "config.json"
        if config.is_file():
            data = json.loads(config.read_text())
            if isinstance(data, dict) and "vocab_size" in data:  # faster-whisper's has none
                return int(data["vocab_size"]) < 51865
        if (folder / TOKENIZER_FILE).is_file():
            ids = added_token_ids(folder / TOKENIZER_FILE)
            return ids["<|notimestamps|>"] + 1 + NUM_TIMESTAMPS < 51865
    except (ValueError, KeyError, TypeError, ModelFileError) as err:
        raise TrainerFailure(
            Reason.MODEL_LOAD_FAILED, f"spec.baseModel {source}: unreadable model files ({err})"
        ) from err
    return False


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
