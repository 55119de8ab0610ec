"""The three dataset layouts, their detection, and parsing into `Sample`s.

- `manifest`: NeMo-style JSONL, one {"audio_filepath", "text", "duration"?} per line;
  audio_filepath relative to the dataset prefix or a full s3:// URI.
- `audiofolder`: Hugging Face AudioFolder, `metadata.csv` with `file_name` (relative to the CSV)
  and a transcription column (transcription, text, sentence or transcript).
- `pairs`: `name.wav` (or flac, mp3, ogg, opus, m4a) beside `name.txt`.

Parsing is pure (text in, samples and skips out), so the unit tests need no S3. Lines and rows
that cannot be used are counted in the `SkipLog`, never fatal; a layout that cannot be read at
all (no transcription column, nothing recognisable under the prefix) is `BadData`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import posixpath
from collections.abc import Collection
from dataclasses import dataclass, field

from ..errors import bad_data
from ..storage import S3Object, parse_s3_uri
from .samples import Sample, Skip, SkipLog

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a")
MANIFEST_NAMES = ("manifest.jsonl", "train.jsonl", "train_manifest.jsonl", "train_manifest.json")
METADATA_NAME = "metadata.csv"
TRANSCRIPT_COLUMNS = ("transcription", "text", "sentence", "transcript")
FORMATS = ("manifest", "audiofolder", "pairs")


@dataclass
class Listing:
    """The objects under the dataset prefix, keyed by their path relative to it."""

    base_uri: str  # s3://bucket/prefix/ (always ending in "/")
    objects: dict[str, S3Object] = field(default_factory=dict)

    @classmethod
    def of(cls, base_uri: str, objects: list[S3Object]) -> Listing:
        base = base_uri if base_uri.endswith("/") else base_uri + "/"
        _, prefix = parse_s3_uri(base)
        return cls(base, {o.key[len(prefix) :]: o for o in objects if not o.key.endswith("/")})

    def uri(self, rel: str) -> str:
        return self.base_uri + rel

    def resolve(self, path: str) -> tuple[str, str | None]:
        """A manifest path (relative or s3://) -> (full URI, ETag if listed)."""
        if path.startswith("s3://"):
            bucket, key = parse_s3_uri(path)
            base_bucket, prefix = parse_s3_uri(self.base_uri)
            if bucket == base_bucket and key.startswith(prefix):
                obj = self.objects.get(key[len(prefix) :])
                return path, obj.etag if obj else None
            return path, None
        rel = posixpath.normpath(path)  # "./a.wav" -> "a.wav"
        obj = self.objects.get(rel)
        return self.uri(rel), obj.etag if obj else None

    def has(self, uri: str) -> bool:
        return uri.startswith(self.base_uri) and uri[len(self.base_uri) :] in self.objects


def find_manifest(listing: Listing, exclude: Collection[str] = ()) -> str | None:
    """The training manifest's relative path, when the prefix has one (evaluation manifests,
    named in `exclude`, are not it)."""
    for name in MANIFEST_NAMES:
        if name in listing.objects and name not in exclude:
            return name
    top = [k for k in listing.objects if "/" not in k and k.endswith(".jsonl") and k not in exclude]
    return top[0] if len(top) == 1 else None


def detect_format(listing: Listing, eval_manifests: Collection[str] = ()) -> str:
    """`manifest`, `audiofolder` or `pairs`, from what is under the prefix."""
    if find_manifest(listing, exclude=eval_manifests):
        return "manifest"
    if METADATA_NAME in listing.objects:
        return "audiofolder"
    stems = {posixpath.splitext(k)[0] for k in listing.objects if k.endswith(".txt")}
    if any(
        posixpath.splitext(k)[1].lower() in AUDIO_EXTENSIONS and posixpath.splitext(k)[0] in stems
        for k in listing.objects
    ):
        return "pairs"
    shown = ", ".join(sorted(listing.objects)[:8]) or "nothing"
    raise bad_data(
        f"cannot tell the dataset format under {listing.base_uri}: no manifest "
        f"({', '.join(MANIFEST_NAMES)} or a single .jsonl), no {METADATA_NAME}, and no audio file "
        f"with a .txt transcript beside it (found: {shown}). Set spec.dataset.format to one of "
        f"{', '.join(FORMATS)}."
    )


def _lines(data: bytes) -> list[str]:
    # surrogateescape keeps undecodable bytes visible per line, so one bad line is one skip.
    return data.decode("utf-8", errors="surrogateescape").lstrip("\ufeff").splitlines()


def _has_bad_bytes(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def parse_manifest(data: bytes, name: str, listing: Listing, skips: SkipLog) -> list[Sample]:
    """NeMo JSONL: {"audio_filepath": ..., "text": ..., "duration": ...} per line."""
    samples: list[Sample] = []
    for number, line in enumerate(_lines(data), start=1):
        where = f"{name}:{number}"
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as err:
            reason = Skip.UNDECODABLE_TEXT if _has_bad_bytes(line) else Skip.BAD_MANIFEST_LINE
            skips.add(reason, where, f"not JSON: {err.msg}")
            continue
        path = entry.get("audio_filepath") if isinstance(entry, dict) else None
        if not isinstance(path, str) or not path.strip():
            skips.add(Skip.BAD_MANIFEST_LINE, where, "no audio_filepath string")
            continue
        uri, etag = listing.resolve(path.strip())
        text = entry.get("text")
        if text is None:
            skips.add(Skip.MISSING_TRANSCRIPT, uri, f"{where}: no 'text'")
            continue
        if not isinstance(text, str):
            skips.add(Skip.BAD_MANIFEST_LINE, where, f"'text' is {type(text).__name__}")
            continue
        if _has_bad_bytes(text):
            skips.add(Skip.UNDECODABLE_TEXT, uri, f"{where}: transcript is not UTF-8")
            continue
        duration = entry.get("duration")
        samples.append(
            Sample(
                audio_uri=uri,
                audio_etag=etag,
                text=text,
                duration=float(duration) if isinstance(duration, int | float) else None,
                source=where,
            )
        )
    return samples


def parse_audiofolder(data: bytes, name: str, listing: Listing, skips: SkipLog) -> list[Sample]:
    """AudioFolder metadata.csv: file_name relative to the CSV, plus a transcription column."""
    rows = csv.reader(io.StringIO("\n".join(_lines(data))))
    header = next(rows, None)
    if not header:
        raise bad_data(f"{listing.uri(name)} is empty: expected a header with file_name")
    columns = [h.strip().lower() for h in header]
    if "file_name" not in columns:
        raise bad_data(f"{listing.uri(name)} has no file_name column (columns: {header})")
    text_col = next((c for c in TRANSCRIPT_COLUMNS if c in columns), None)
    if text_col is None:
        raise bad_data(
            f"{listing.uri(name)} has no transcription column: expected one of "
            f"{', '.join(TRANSCRIPT_COLUMNS)} (columns: {header})"
        )
    file_i, text_i = columns.index("file_name"), columns.index(text_col)
    folder = posixpath.dirname(name)
    samples: list[Sample] = []
    for number, row in enumerate(rows, start=2):
        where = f"{name}:{number}"
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) <= file_i or not row[file_i].strip():
            skips.add(Skip.BAD_MANIFEST_LINE, where, "no file_name")
            continue
        uri, etag = listing.resolve(posixpath.join(folder, row[file_i].strip()))
        if len(row) <= text_i:
            skips.add(Skip.MISSING_TRANSCRIPT, uri, f"{where}: no {text_col} value")
            continue
        if _has_bad_bytes(row[text_i]):
            skips.add(Skip.UNDECODABLE_TEXT, uri, f"{where}: transcript is not UTF-8")
            continue
        samples.append(Sample(audio_uri=uri, audio_etag=etag, text=row[text_i], source=where))
    return samples


def pair_samples(listing: Listing, skips: SkipLog) -> list[Sample]:
    """name.{wav,flac,...} beside name.txt; the transcript is read later (it is an object)."""
    texts = {posixpath.splitext(k)[0]: k for k in listing.objects if k.endswith(".txt")}
    used: set[str] = set()
    samples: list[Sample] = []
    for rel in sorted(listing.objects):
        stem, ext = posixpath.splitext(rel)
        if ext.lower() not in AUDIO_EXTENSIONS:
            continue
        uri = listing.uri(rel)
        txt = texts.get(stem)
        if txt is None:
            skips.add(Skip.MISSING_TRANSCRIPT, uri, f"no {posixpath.basename(stem)}.txt beside it")
            continue
        used.add(txt)
        samples.append(
            Sample(
                audio_uri=uri,
                audio_etag=listing.objects[rel].etag,
                text_uri=listing.uri(txt),
                text_etag=listing.objects[txt].etag,
                source=rel,
            )
        )
    for txt in sorted(texts.values()):
        if txt not in used:
            skips.add(Skip.MISSING_AUDIO, listing.uri(txt), "transcript with no audio beside it")
    return samples


def is_eval(audio_uri: str, fraction: float) -> bool:
    """Deterministic split: the same path lands on the same side on every run and machine."""
    if fraction <= 0:
        return False
    digest = hashlib.sha256(audio_uri.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction
