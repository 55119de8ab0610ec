"""Compiled kernels kept under `spec.dataset.cacheUri`, so that only the first Job compiles.

On a GPU, most of the time before the first training step is compilation: Unsloth writes
patched model code (UNSLOTH_COMPILE_LOCATION), torch's inductor turns each region into kernels
(its FX-graph and AOTAutograd caches, TORCHINDUCTOR_CACHE_DIR) and Triton builds them into
cubins (TRITON_CACHE_DIR). All three are on-disk caches keyed by their own inputs, so a Job
that starts with the folders of an earlier Job skips the work those folders already hold, and
a Job of other shapes just adds entries. A pod's disk is gone when it ends; this module carries
the folders across Jobs as one archive in S3:

- `restore()` before anything compiles (before the engine loads the model): the archive, if
  there is one for this software and GPU, is unpacked into the three folders;
- `save()` after training and the final evaluation (everything that compiles has compiled):
  the folders are packed and uploaded when they hold anything the restored archive did not.

The archive's key names what makes kernels incompatible: torch, Triton, Unsloth and
transformers versions, the GPU's name and compute capability, and the CUDA build. Everything
here is best effort: a cache that cannot be read or written costs time, never the run.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tarfile
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from .errors import TrainerFailure
from .results import CompileCacheUse
from .storage import S3Store

log = logging.getLogger(__name__)

# The environment variable each compiler reads its folder from, and the name of that folder
# inside the archive.
FOLDERS: dict[str, str] = {
    "UNSLOTH_COMPILE_LOCATION": "unsloth",
    "TORCHINDUCTOR_CACHE_DIR": "inductor",
    "TRITON_CACHE_DIR": "triton",
}
# A larger archive is not written: it would cost more to move than it saves.
MAX_ARCHIVE_BYTES = 4 * 2**30
PREFIX = "compiled"


def package_versions(packages: Iterable[str]) -> dict[str, str]:
    """Each installed package's version, "-" for one that is not installed."""
    versions = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "-"
    return versions


def software_key() -> dict[str, str]:
    """What must be equal for one Job's compiled kernels to be valid in another."""
    import torch

    versions = package_versions(
        ("torch", "triton", "unsloth", "unsloth_zoo", "transformers", "peft")
    )
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        versions["gpu"] = f"{torch.cuda.get_device_name()} sm_{major}{minor}"
        versions["cuda"] = str(torch.version.cuda)
    return versions


# torch's own compile timers (seconds, summed over the process) worth reading: dynamo's whole
# compile of a region, the backend (inductor) inside it, and the backward graph, compiled
# lazily at the first backward.
_TIMERS = {
    "_compile.compile_inner": "compile",
    "OutputGraph.call_user_compiler": "backend",
    "backward._backward_impl": "backwardCompile",
}


def compiler_stats() -> dict[str, float]:
    """What torch compiled so far in this process: seconds in its compile timers and its
    caches' hits and misses (inductor's FX graphs, AOTAutograd's). Read for the log and
    metrics.json: whether a restored cache served, and what the compile cost."""
    import torch._dynamo.utils as dynamo_utils

    out: dict[str, float] = {}
    for timer, name in _TIMERS.items():
        out[name + "Seconds"] = round(sum(dynamo_utils.compilation_time_metrics.get(timer, [])), 3)
    for group in ("inductor", "aot_autograd"):
        for counter, value in dynamo_utils.counters[group].items():
            if "cache" in counter:
                out[counter] = value
    return out


def ensure_folders(base: Path) -> dict[str, Path]:
    """Point every compiler at a folder (the one the environment names, else one under `base`)
    before any of them starts: inductor's default is a per-user temp folder that a restore
    could not find."""
    folders = {}
    for variable, name in FOLDERS.items():
        path = Path(os.environ.get(variable) or base / name)
        os.environ[variable] = str(path)
        path.mkdir(parents=True, exist_ok=True)
        folders[name] = path
    return folders


def _inventory(folders: dict[str, Path]) -> dict[str, int]:
    """Every file's path in the archive and its size: what a restore brought, or a Job added."""
    out = {}
    for name, root in folders.items():
        for path in root.rglob("*"):
            if path.is_file() and not path.name.endswith(".lock"):
                out[f"{name}/{path.relative_to(root).as_posix()}"] = path.stat().st_size
    return out


@dataclass
class CompileCache:
    """One archive, `<cacheUri>/compiled/<key>.tar.gz`, restored into and saved from the
    compilers' folders."""

    store: S3Store
    uri: str
    folders: dict[str, Path]
    restored: dict[str, int] = field(default_factory=dict)
    saved: bool = False
    notes: list[str] = field(default_factory=list)

    def _note(self, message: str) -> None:
        """Said in the log as it happens, and kept for metrics.json's notes."""
        log.info("%s", message)
        self.notes.append(message)

    def as_metrics(self) -> CompileCacheUse:
        """metrics.json's `compileCache`: where, what the Job found and whether it wrote."""
        return CompileCacheUse(
            uri=self.uri,
            restored_files=len(self.restored),
            saved=self.saved,
            compiler=compiler_stats(),
        )

    @classmethod
    def for_run(cls, cache_uri: str | None, store: S3Store, work_dir: Path) -> CompileCache | None:
        """The cache of this run, or None where there is nothing to keep (no cacheUri, no GPU:
        the CPU path compiles nothing)."""
        import torch

        if not cache_uri or not torch.cuda.is_available():
            return None
        key = hashlib.sha256(json.dumps(software_key(), sort_keys=True).encode()).hexdigest()[:24]
        uri = f"{cache_uri.rstrip('/')}/{PREFIX}/{key}.tar.gz"
        return cls(store, uri, ensure_folders(work_dir / "compiled"))

    def restore(self) -> bool:
        """Unpack the archive into the folders; False when there is none (or it is unreadable)."""
        started = time.monotonic()
        try:
            if not self.store.exists(self.uri):
                self._note(f"compile cache: none yet at {self.uri}; this Job compiles")
                return False
            data = self.store.read_bytes(self.uri)
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
                for name, root in self.folders.items():
                    members = [m for m in archive.getmembers() if m.name.startswith(name + "/")]
                    for m in members:
                        m.name = m.name[len(name) + 1 :]
                    # filter="data": no absolute paths, no links out of the folder, no devices.
                    archive.extractall(root, members=members, filter="data")
        except (TrainerFailure, tarfile.TarError, OSError, EOFError) as err:
            message = err.message if isinstance(err, TrainerFailure) else str(err)
            self._note(f"compile cache: could not restore {self.uri}: {message}")
            return False
        self.restored = _inventory(self.folders)
        self._note(
            f"compile cache: restored {len(self.restored)} files ({len(data) / 2**20:.0f} MiB) "
            f"from {self.uri} in {time.monotonic() - started:.1f} s"
        )
        return True

    def save(self) -> bool:
        """Upload the folders when this Job added to them; True when an archive was written."""
        now = _inventory(self.folders)
        added = {path for path, size in now.items() if self.restored.get(path) != size}
        if not added:
            self._note("compile cache: nothing new to save")
            return False
        started = time.monotonic()
        try:
            with tempfile.TemporaryFile() as spool:
                with tarfile.open(fileobj=spool, mode="w:gz", compresslevel=1) as archive:
                    for name, root in self.folders.items():
                        archive.add(root, arcname=name, filter=_no_locks)
                size = spool.tell()
                if size > MAX_ARCHIVE_BYTES:
                    self._note(
                        f"compile cache: not saved, {size / 2**30:.1f} GiB is over the "
                        f"{MAX_ARCHIVE_BYTES / 2**30:.0f} GiB limit"
                    )
                    return False
                spool.seek(0)
                self.store.put_bytes(self.uri, spool.read(), "application/gzip")
        except (TrainerFailure, tarfile.TarError, OSError) as err:
            message = err.message if isinstance(err, TrainerFailure) else str(err)
            self._note(f"compile cache: could not save {self.uri}: {message}")
            return False
        self.saved = True
        self._note(
            f"compile cache: saved {len(now)} files ({len(added)} new, {size / 2**20:.0f} MiB) "
            f"to {self.uri} in {time.monotonic() - started:.1f} s"
        )
        return True


def _no_locks(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
    # Lock files belong to the processes that held them, and sockets or links have no place.
    if member.name.endswith(".lock") or not (member.isfile() or member.isdir()):
        return None
    return member
