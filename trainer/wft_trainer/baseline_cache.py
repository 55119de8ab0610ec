"""The base model's word error rates kept under `spec.dataset.cacheUri`, so that a second Job
of the same base model on the same eval data does not decode it again.

Eager decoding is most of a Job's baseline evaluation (23-24 s of 24-26 s for four clips of
random large-v3 on the H100, run 24), and it gives the same figures every time for the same
inputs. A false baseline is worse than a slow one, so the key is the content, never a name:

- the base model: every byte of every file in its folder (weights, config, generation config,
  tokenizer), hashed in a thread while the data stage runs (hashlib releases the GIL); a
  Hugging Face id (no folder of ours) is never cached;
- the eval data: every byte of the prepared eval splits the evaluation reads (features, labels,
  reference texts), not the dataset's listing;
- how it is computed: engine, quantization, dtypes, eval batch size, language and task, the
  LoRA settings, the software and GPU (`compile_cache.software_key`, and the packages that
  compute or score the figures), the CPU's instruction set, and the source of the trainer and
  API packages (any code change starts a new key).

Everything here is best effort: a cache that cannot be read or written costs the evaluation,
never the run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import TrainerFailure
from .results import EvalResult
from .storage import S3Store

log = logging.getLogger(__name__)

Evaluation = tuple[EvalResult, EvalResult | None]  # (baseline, baselineGeneral)

# Bump when what a cached baseline holds, or how it is computed, changes beyond the source
# digest's reach (the source of wft_trainer and wft_api is in the key already).
VERSION = 1
PREFIX = "baselines"
_CHUNK = 16 * 2**20


# Beyond the compiler's (compile_cache.software_key): what else computes or scores the figures:
# the 4- and 8-bit matmuls, the word alignment, Whisper's English normalizer (its spelling map
# comes from openai-whisper), accelerate's device placement.
SCORING_PACKAGES = ("bitsandbytes", "jiwer", "openai-whisper", "accelerate", "numpy")


def _cpu() -> str:
    """The CPU's kernels differ by instruction set (a CPU run's figures with them)."""
    import torch

    return f"{platform.machine()} {torch.backends.cpu.get_cpu_capability()}"


def digest_files(paths: Iterable[Path], root: Path | None = None) -> str:
    """sha256 over each file's name (relative to `root`), size and bytes, in name order."""
    h = hashlib.sha256()
    for path in sorted(paths):
        name = path.relative_to(root).as_posix() if root else path.name
        h.update(f"\0{name}\0{path.stat().st_size}\0".encode())
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    return h.hexdigest()


def digest_folder(folder: Path) -> str:
    return digest_files((p for p in folder.rglob("*") if p.is_file()), folder)


def source_digest() -> str:
    """The trainer's and the API model's own code: a new version never reuses a baseline."""
    import wft_api

    roots = [Path(__file__).parent, Path(wft_api.__file__).parent]
    return hashlib.sha256(
        "".join(digest_files(root.rglob("*.py"), root) for root in roots).encode()
    ).hexdigest()


def split_digest(split: Any) -> str | None:
    """The bytes of a prepared split's Arrow files, or None for a split held only in memory."""
    files = [Path(f["filename"]) for f in getattr(split, "cache_files", None) or []]
    return digest_files(files) if files else None


@dataclass
class BaselineCache:
    """One JSON object per key, `<cacheUri>/baselines/<key>.json`."""

    store: S3Store
    cache_uri: str
    model_digest: Future[str]
    uri: str | None = None
    notes: list[str] = field(default_factory=list)

    def _note(self, message: str) -> None:
        log.info("%s", message)
        self.notes.append(message)

    @classmethod
    def for_run(
        cls, cache_uri: str | None, store: S3Store, model_path: str
    ) -> BaselineCache | None:
        """Starts hashing the base model's folder now; None without a cacheUri or a folder."""
        folder = Path(model_path)
        if not cache_uri or not folder.is_dir():
            return None
        future: Future[str] = Future()

        def digest() -> None:
            try:
                future.set_result(digest_folder(folder))
            except OSError as err:
                future.set_exception(err)

        # A daemon thread: a Job that fails or is stopped before its baseline exits at once,
        # not after hashing gigabytes it will never use (a pool's worker is joined at exit).
        threading.Thread(target=digest, name="wft-model-digest", daemon=True).start()
        return cls(store, cache_uri.rstrip("/"), future)

    def _key(self, inputs: dict[str, Any]) -> str | None:
        from .compile_cache import package_versions, software_key

        data = [split_digest(s) if s is not None else "-" for s in inputs.pop("splits")]
        if None in data:
            return None
        parts = {
            **inputs,
            "version": VERSION,
            "model": self.model_digest.result(),
            "data": data,
            "software": {**software_key(), **package_versions(SCORING_PACKAGES)},
            "cpu": _cpu(),
            "code": source_digest(),
        }
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]

    def find(self, **inputs: Any) -> Evaluation | None:
        """The cached (baseline, baselineGeneral) for exactly these inputs, or None (and
        the key remembered for `save`). `inputs`: `splits` (the eval splits, None where absent)
        and every other setting the figures depend on, JSON-serialisable."""
        try:
            key = self._key(dict(inputs))
            if key is None:
                self._note("baseline cache: an eval split has no files to hash; evaluating")
                return None
            self.uri = f"{self.cache_uri}/{PREFIX}/{key}.json"
            if not self.store.exists(self.uri):
                self._note(f"baseline cache: none yet at {self.uri}; evaluating the base model")
                return None
            found = json.loads(self.store.read_bytes(self.uri))
            general = found.get("baselineGeneral")
            cached = (
                EvalResult.model_validate(found["baseline"]),
                EvalResult.model_validate(general) if general else None,
            )
        except (TrainerFailure, OSError, ValueError, KeyError, AttributeError, TypeError) as err:
            message = err.message if isinstance(err, TrainerFailure) else str(err)
            self._note(f"baseline cache: not used ({message}); evaluating the base model")
            self.uri = None
            return None
        self._note(
            f"baseline cache: the base model's word error rates from {self.uri} (the same model "
            "files, eval data, settings, software and GPU, byte for byte)"
        )
        return cached

    def save(self, baseline: EvalResult, baseline_general: EvalResult | None) -> None:
        if self.uri is None:
            return
        body = {
            "baseline": baseline.model_dump(by_alias=True),
            "baselineGeneral": baseline_general.model_dump(by_alias=True)
            if baseline_general
            else None,
        }
        try:
            self.store.put_bytes(self.uri, json.dumps(body).encode(), "application/json")
        except TrainerFailure as err:
            self._note(f"baseline cache: could not save {self.uri}: {err.message}")
            return
        self._note(f"baseline cache: saved to {self.uri}")


def baseline_once(
    cache: BaselineCache | None, evaluate: Callable[[], Evaluation], **inputs: Any
) -> Evaluation:
    """(baseline, baselineGeneral): from the cache when it holds them for exactly these inputs
    (see `BaselineCache.find`), else evaluated and saved for the next Job."""
    found = cache.find(**inputs) if cache else None
    if found is not None:
        return found
    baseline, general = evaluate()
    if cache:
        cache.save(baseline, general)
    return baseline, general
