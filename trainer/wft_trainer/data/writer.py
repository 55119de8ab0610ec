"""Rows to a Hugging Face `datasets` dataset on disk, written incrementally in Arrow shards.

Memory stays bounded however large the corpus: rows are flushed every `WRITER_BATCH` rows and a
new shard starts every `SHARD_ROWS`. The folder is what `Dataset.save_to_disk` writes
(`data-0000i-of-0000n.arrow`, `state.json`, `dataset_info.json`), so `datasets.load_from_disk`
opens it memory-mapped, and so does `load_split` here.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

WRITER_BATCH = 32  # rows buffered before a write: 32 x 480 KB (80 mels, float16) = 15 MB
SHARD_ROWS = 2000  # ~1 GB shards at 80 mels


def features_schema(num_mel_bins: int) -> Any:
    from datasets import Array2D, Features, List, Value

    from .features import N_FRAMES

    return Features(
        {
            "input_features": Array2D((num_mel_bins, N_FRAMES), "float16"),
            "labels": List(Value("int32")),
            "text": Value("string"),
            "audio": Value("string"),
            "duration": Value("float32"),
        }
    )


class ShardWriter:
    """Append rows; `close()` names the shards and writes the metadata `load_from_disk` reads."""

    def __init__(self, directory: Path, num_mel_bins: int) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.features = features_schema(num_mel_bins)
        self.rows = 0
        self.seconds = 0.0
        self._shards: list[Path] = []
        self._writer: Any = None
        self._in_shard = 0

    def write(self, row: dict[str, Any]) -> None:
        from datasets.arrow_writer import ArrowWriter

        if self._writer is None or self._in_shard >= SHARD_ROWS:
            self._finish_shard()
            path = self.directory / f"shard-{len(self._shards):05d}.arrow.tmp"
            self._shards.append(path)
            self._writer = ArrowWriter(
                features=self.features, path=str(path), writer_batch_size=WRITER_BATCH
            )
            self._in_shard = 0
        self._writer.write(row)
        self._in_shard += 1
        self.rows += 1
        self.seconds += float(row["duration"])

    def _finish_shard(self) -> None:
        if self._writer is not None:
            self._writer.finalize()
            self._writer.close()
            self._writer = None

    def close(self) -> None:
        self._finish_shard()
        if not self._shards:  # an empty split is still a loadable dataset
            from datasets import Dataset

            Dataset.from_dict({k: [] for k in self.features}, features=self.features).save_to_disk(
                str(self.directory)
            )
            return
        n = len(self._shards)
        names = []
        for i, tmp in enumerate(self._shards):
            name = f"data-{i:05d}-of-{n:05d}.arrow"
            tmp.rename(self.directory / name)
            names.append(name)
        fingerprint = hashlib.sha256(
            ("|".join(names) + str(self.rows) + str(self.directory)).encode()
        ).hexdigest()[:16]
        state: dict[str, Any] = {
            "_data_files": [{"filename": name} for name in names],
            "_fingerprint": fingerprint,
            "_format_columns": None,
            "_format_kwargs": {},
            "_format_type": None,
            "_output_all_columns": False,
            "_split": None,
        }
        (self.directory / "state.json").write_text(json.dumps(state, indent=2))
        info = {"features": self.features.to_dict(), "description": "", "citation": ""}
        (self.directory / "dataset_info.json").write_text(json.dumps(info, indent=2))


def load_split(directory: Path) -> Any:
    """The split as a memory-mapped `datasets.Dataset`."""
    from datasets import load_from_disk

    return load_from_disk(str(directory))
