"""The data stage, top to bottom: list -> parse -> transcripts -> audio -> features -> dataset.

1. List the dataset prefix once (keys, sizes, ETags); detect or check the format.
2. Fingerprint (ETags + settings + processor): a finished dataset with that fingerprint in the
   work dir, or under `spec.dataset.cacheUri`, is reused with no download and no compute.
3. Parse the layout into samples; split off evaluation (eval manifest, or a hash of the path);
   read the general evaluation manifest when the spec names one.
4. Transcripts: read (pairs), normalize, check the script against spec.language, tokenize with
   Whisper's prefix — in this process, cheap, and before any audio is fetched, so a sample with
   an unusable transcript costs no download; then one sample per audio file (duplicates and
   conflicting transcripts are counted).
5. Audio: bounded parallel downloads (threads, into the ETag cache) feed a process pool that
   decodes, resamples to 16 kHz mono and computes log-mel features; rows stream in order into
   Arrow shards. At most `window` samples are in flight: memory does not grow with the corpus.
6. Check what was skipped against spec.dataset.maxSkippedFraction; write report.json.

A bad dataset is reported in one pass: a manifest that cannot be read, too many skipped samples
and no training sample left are gathered into one failure after every other file was checked,
and the failure (`DataStageFailure`) carries the report, which names every skipped file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from wft_api.conditions import Reason
from wft_api.v1alpha1 import WHISPER_MAX_LABEL_TOKENS, DatasetSpec, TrainerConfig

from ..errors import TrainerFailure, bad_data
from ..models.vocab import set_decoder_prompt
from ..storage import SUCCESS, S3Store
from .features import ClipJob, init_worker, process_clip
from .formats import (
    Listing,
    detect_format,
    find_manifest,
    is_eval,
    pair_samples,
    parse_audiofolder,
    parse_manifest,
)
from .normalize import normalizer
from .report import DataStageFailure, PrepareReport, SkippedExample
from .samples import Sample, Skip, SkipLog
from .scripts import mismatch as script_mismatch
from .writer import ShardWriter, load_split

log = logging.getLogger(__name__)

# Bump when the output of this stage changes for the same input (invalidates every cache).
PIPELINE_VERSION = 2  # 2: NaN and loud audio, duplicates, conflicts and scripts checked
Progress = Callable[[int, int], None]


@dataclass
class PreparedData:
    train: Any  # datasets.Dataset, memory-mapped
    eval: Any | None  # datasets.Dataset, or None when no evaluation split
    report: PrepareReport
    path: Path
    general: Any | None = None  # spec.dataset.generalEvalManifest, prepared like eval


@dataclass
class _Candidate:
    sample: Sample
    text: str
    labels: list[int]


def _start_pool(n_workers: int, processor: Any) -> ProcessPoolExecutor:
    mp = multiprocessing.get_context("spawn")  # fork after boto3's threads start can deadlock
    pool = ProcessPoolExecutor(
        n_workers,
        mp_context=mp,
        initializer=init_worker,
        initargs=(np.asarray(processor.feature_extractor.mel_filters),),
    )
    for _ in range(n_workers):  # workers start on demand: ask for all of them now
        pool.submit(int)
    return pool


def cpu_count() -> int:
    """CPUs this process may use: affinity, the cgroup quota (a pod's limit), WFT_DATA_WORKERS."""
    if os.environ.get("WFT_DATA_WORKERS"):
        return max(1, int(os.environ["WFT_DATA_WORKERS"]))
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            n = min(n, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


@dataclass
class _Found:
    """What the data stage has found so far: the report is built from it on success and on
    failure alike."""

    skips: SkipLog = field(default_factory=SkipLog)
    warnings: SkipLog = field(default_factory=SkipLog)
    problems: list[TrainerFailure] = field(default_factory=list)  # fatal, all gathered
    fmt: str = ""
    fingerprint: str = ""
    writers: dict[str, ShardWriter] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def prepare(
    config: TrainerConfig,
    processor: Any,
    work_dir: Path,
    store: S3Store,
    on_progress: Progress | None = None,
    workers: int | None = None,
) -> PreparedData:
    """Run the data stage; see the module docstring. Raises DataStageFailure (a TrainerFailure
    in words, with the report of everything found) when the data cannot be used."""
    started = time.monotonic()
    stats_before = dict(store.stats)
    found = _Found()
    try:
        return _prepare(config, processor, work_dir, store, on_progress, workers, found, started)
    except TrainerFailure as err:
        if isinstance(err, DataStageFailure):
            raise
        report = _report(config, processor, found, store, stats_before, started)
        report.failure = {"reason": err.reason, "message": err.message}
        raise DataStageFailure(err.reason, err.message, report) from None


def _prepare(
    config: TrainerConfig,
    processor: Any,
    work_dir: Path,
    store: S3Store,
    on_progress: Progress | None,
    workers: int | None,
    found: _Found,
    started: float,
) -> PreparedData:
    spec = config.spec
    ds = spec.dataset
    stats_before = dict(store.stats)
    timings = found.timings

    t = time.monotonic()
    listing = Listing.of(ds.uri, list(store.list(ds.uri)))
    if not listing.objects:
        raise TrainerFailure(
            Reason.S3_NOT_FOUND, f"no objects under {listing.base_uri} (spec.dataset.uri)"
        )
    fmt = ds.format if ds.format != "auto" else detect_format(listing, _eval_manifests(listing, ds))
    found.fmt = fmt
    timings["list"] = time.monotonic() - t

    set_decoder_prompt(processor.tokenizer, spec.language, spec.task)  # labels start with it
    fingerprint = _fingerprint(config, processor, listing, fmt)
    found.fingerprint = fingerprint
    out = Path(work_dir) / "prepared" / fingerprint
    reused = _reuse(out, ds.cache_uri, fingerprint, store)
    if reused is not None:
        return _load(out, reused, timings, started, store, stats_before)

    n_workers = workers or cpu_count()
    skips = found.skips
    tmp = out.with_name(f".{fingerprint}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    # Spawn the workers first: their start (about a second of numpy/soundfile/soxr imports)
    # then overlaps with reading the manifest and the transcripts instead of preceding the audio.
    try:
        with _start_pool(n_workers, processor) as pool:
            tokenizer = processor.tokenizer
            t = time.monotonic()
            train, evals, general = _samples(config, store, listing, fmt, found)
            timings["parse"] = time.monotonic() - t

            t = time.monotonic()
            norm = normalizer(spec.preprocessing.normalization)
            screen = _script_screen(config, found)
            split_cands = [
                _transcripts(split, norm, tokenizer, store, skips, screen)
                for split in (train, evals, general)
            ]
            train_c, eval_c, general_c = _deduplicate(split_cands, skips)
            timings["transcripts"] = time.monotonic() - t
            # No verdict yet: the audio is checked too, so that one run reports every bad file.

            n_mels = int(processor.feature_extractor.feature_size)
            limit_train = min(len(train_c), ds.max_samples) if ds.max_samples else len(train_c)
            progress = _ProgressCounter(len(eval_c) + len(general_c) + limit_train, on_progress)
            t = time.monotonic()
            splits = {
                "train": (train_c, ds.max_samples),
                "eval": (eval_c, None),
                "general": (general_c, None),
            }
            for name, (cands, limit) in splits.items():
                writer = ShardWriter(tmp / name, n_mels)
                found.writers[name] = writer
                for row in _rows(cands, config, store, pool, n_workers, skips, progress, limit):
                    writer.write(row)
                writer.close()
            timings["audio"] = time.monotonic() - t

        failure = _verdict(config, found)
        if failure is not None:
            raise failure
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    report = _report(config, processor, found, store, stats_before, started)
    (tmp / "report.json").write_text(json.dumps(report.to_json(), indent=2))
    if ds.cache_uri:
        _upload_cache(tmp, ds.cache_uri, fingerprint, store)
    (tmp / SUCCESS).write_text(fingerprint)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    log.info("prepared %s\n%s", out, report.summary())
    n_eval, n_general = found.writers["eval"].rows, found.writers["general"].rows
    return PreparedData(
        train=load_split(out / "train"),
        eval=load_split(out / "eval") if n_eval else None,
        report=report,
        path=out,
        general=load_split(out / "general") if n_general else None,
    )


def _report(
    config: TrainerConfig,
    processor: Any,
    found: _Found,
    store: S3Store,
    stats_before: dict[str, int],
    started: float,
) -> PrepareReport:
    """The report of what was found: the finished dataset's, or a failed stage's so far."""
    ds = config.spec.dataset
    rows = {name: w.rows for name, w in found.writers.items()}
    seconds = {name: w.seconds for name, w in found.writers.items()}
    written = sum(rows.values())
    skips, warnings = found.skips, found.warnings
    base = ds.uri if ds.uri.endswith("/") else ds.uri + "/"
    report = PrepareReport(
        format=found.fmt or ds.format,
        format_detected=ds.format == "auto" and bool(found.fmt),
        dataset_uri=base,
        samples=rows.get("train", 0),
        eval_samples=rows.get("eval", 0),
        hours=seconds.get("train", 0.0) / 3600,
        eval_hours=seconds.get("eval", 0.0) / 3600,
        general_eval_samples=rows.get("general", 0),
        candidates=written + skips.total,
        skipped=skips.total,
        skipped_reasons=dict(sorted(skips.counts.items())),
        skipped_examples=[SkippedExample(**e) for e in skips.examples],
        skipped_files=[SkippedExample(**e) for e in skips.files],
        warnings=dict(sorted(warnings.counts.items())),
        warned_files=[SkippedExample(**e) for e in warnings.files],
        normalization=config.spec.preprocessing.normalization,
        num_mel_bins=int(processor.feature_extractor.feature_size),
        fingerprint=found.fingerprint,
        downloaded_files=store.stats["downloads"] - stats_before["downloads"],
        downloaded_bytes=store.stats["bytes_downloaded"] - stats_before["bytes_downloaded"],
    )
    report.timings = {**found.timings, "total": time.monotonic() - started}
    return report


# -- samples -----------------------------------------------------------------------------------


def _samples(
    config: TrainerConfig, store: S3Store, listing: Listing, fmt: str, found: _Found
) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """Training, evaluation and general-evaluation samples. A manifest that cannot be read at
    all is a problem of the run (`found.problems`), not the end of it: the others are still
    read and their files checked, so that one run reports everything."""
    ds = config.spec.dataset
    skips = found.skips

    def gathered(read: Callable[[], list[Sample]]) -> list[Sample]:
        try:
            return read()
        except TrainerFailure as err:
            if err.reason not in (Reason.BAD_DATA, Reason.S3_NOT_FOUND):
                raise  # access denied, throttled to death: not the data's fault
            found.problems.append(err)
            return []

    def manifest(name: str) -> Callable[[], list[Sample]]:
        def read() -> list[Sample]:
            rel = _relative(listing, name)
            return parse_manifest(_read(store, listing, rel), rel, listing, skips)

        return read

    general = gathered(manifest(ds.general_eval_manifest)) if ds.general_eval_manifest else []
    samples = gathered(lambda: _train_samples(config, store, listing, fmt, skips))
    if ds.eval_manifest:
        return samples, gathered(manifest(ds.eval_manifest)), general
    train: list[Sample] = []
    evals: list[Sample] = []
    for s in samples:
        (evals if is_eval(_split_key(listing, s.audio_uri), ds.eval_fraction) else train).append(s)
    return train, evals, general


def _train_samples(
    config: TrainerConfig, store: S3Store, listing: Listing, fmt: str, skips: SkipLog
) -> list[Sample]:
    """The training manifest's samples (all samples, when evaluation is a hash split)."""
    ds = config.spec.dataset
    if fmt == "manifest":
        name = (
            _relative(listing, ds.manifest)
            if ds.manifest
            else find_manifest(listing, _eval_manifests(listing, ds))
        )
        if name is None:
            raise bad_data(
                f"no training manifest under {listing.base_uri}: set spec.dataset.manifest, or "
                "name it manifest.jsonl or train.jsonl"
            )
        samples = parse_manifest(_read(store, listing, name), name, listing, skips)
    elif fmt == "audiofolder":
        if "metadata.csv" not in listing.objects:
            raise bad_data(f"format audiofolder needs {listing.uri('metadata.csv')}")
        samples = parse_audiofolder(
            _read(store, listing, "metadata.csv"), "metadata.csv", listing, skips
        )
    else:
        samples = pair_samples(listing, skips)
    return samples


def _eval_manifests(listing: Listing, ds: DatasetSpec) -> list[str]:
    """The manifests that are not the training manifest, relative to the prefix."""
    named = (ds.eval_manifest, ds.general_eval_manifest)
    return [_relative(listing, m) for m in named if m]


def _relative(listing: Listing, name: str) -> str:
    if name.startswith("s3://"):
        if not name.startswith(listing.base_uri):
            raise bad_data(f"manifest {name} must be under spec.dataset.uri {listing.base_uri}")
        return name[len(listing.base_uri) :]
    return name


def _split_key(listing: Listing, uri: str) -> str:
    # Relative to the prefix, so the split survives moving the dataset to another bucket.
    return uri[len(listing.base_uri) :] if uri.startswith(listing.base_uri) else uri


def _read(store: S3Store, listing: Listing, rel: str) -> bytes:
    obj = listing.objects.get(rel)
    if obj is None:
        raise TrainerFailure(Reason.S3_NOT_FOUND, f"no such object: {listing.uri(rel)}")
    return store.cached(listing.uri(rel), obj.etag).read_bytes()


def _script_screen(config: TrainerConfig, found: _Found) -> Callable[[Sample, str], bool]:
    """spec.dataset.scriptMismatch: is a normalized transcript in a script spec.language is
    written in? `warn` counts a mismatch and keeps the sample, `skip` skips it."""
    spec = config.spec
    skip = spec.dataset.script_mismatch == "skip"

    def screen(sample: Sample, text: str) -> bool:
        why = script_mismatch(text, spec.language, spec.task)
        if why is None:
            return True
        log_ = found.skips if skip else found.warnings
        log_.add(Skip.SCRIPT_MISMATCH, sample.audio_uri, f"{sample.source}: {why}: {text[:60]!r}")
        return not skip

    return screen


def _deduplicate(splits: list[list[_Candidate]], skips: SkipLog) -> list[list[_Candidate]]:
    """One audio file, one sample, across train, eval and general eval (in that order): a
    repeat with the same transcript is a `duplicate_entry` (the first is kept; in an eval
    split it would score training audio), and every entry of an audio listed with different
    transcripts is a `conflicting_transcripts` (which one is right is not ours to guess)."""
    by_audio: dict[str, list[_Candidate]] = {}
    for cands in splits:
        for c in cands:
            by_audio.setdefault(c.sample.audio_uri, []).append(c)
    out: list[list[_Candidate]] = []
    kept: dict[str, _Candidate] = {}
    for cands in splits:
        keep = []
        for c in cands:
            uri = c.sample.audio_uri
            entries = by_audio[uri]
            texts = {e.text for e in entries}
            if len(texts) > 1:
                where = ", ".join(e.sample.source for e in entries[:5])
                more = f" and {len(entries) - 5} more" if len(entries) > 5 else ""
                skips.add(
                    Skip.CONFLICTING_TRANSCRIPTS,
                    uri,
                    f"{c.sample.source}: {len(texts)} different transcripts for this audio in "
                    f"{len(entries)} entries ({where}{more}): {c.text[:60]!r}",
                )
            elif uri in kept:
                skips.add(
                    Skip.DUPLICATE_ENTRY,
                    uri,
                    f"{c.sample.source}: the same audio and transcript as {kept[uri].sample.source}",
                )
            else:
                kept[uri] = c
                keep.append(c)
        out.append(keep)
    return out


def _transcripts(
    samples: list[Sample], norm: Callable[[str], str], tokenizer: Any, store: S3Store,
    skips: SkipLog, screen: Callable[[Sample, str], bool],
) -> list[_Candidate]:  # fmt: skip
    """Raw text (reading pairs' .txt objects in parallel) -> normalized text -> label ids."""

    def load(s: Sample) -> str | None:
        if s.text is not None:
            return s.text
        assert s.text_uri is not None
        data = store.cached(s.text_uri, s.text_etag).read_bytes()
        try:
            return " ".join(data.decode("utf-8").lstrip("\ufeff").split())
        except UnicodeDecodeError as err:
            skips.add(Skip.UNDECODABLE_TEXT, s.text_uri, f"not UTF-8 ({err.reason} at {err.start})")
            return None

    texts = list(store.map_parallel(load, samples))
    kept: list[tuple[Sample, str]] = []
    for s, raw in zip(samples, texts, strict=True):
        if raw is None:
            continue
        text = norm(raw)
        if not text:
            skips.add(Skip.EMPTY_TRANSCRIPT, s.audio_uri, f"{raw[:60]!r} normalizes to nothing")
            continue
        if not screen(s, text):
            continue
        kept.append((s, text))
    out: list[_Candidate] = []
    for start in range(0, len(kept), 1024):
        chunk = kept[start : start + 1024]
        # The tokenizer adds the prefix (<|sot|><|lang|><|task|><|notimestamps|>) and <|eot|>.
        ids = tokenizer([text for _, text in chunk]).input_ids
        for (s, text), labels in zip(chunk, ids, strict=True):
            if len(labels) > WHISPER_MAX_LABEL_TOKENS:
                skips.add(
                    Skip.LABEL_TOO_LONG,
                    s.audio_uri,
                    f"{len(labels)} tokens > {WHISPER_MAX_LABEL_TOKENS} (Whisper's decoder limit)",
                )
                continue
            out.append(_Candidate(s, text, list(labels)))
    return out


# -- audio -------------------------------------------------------------------------------------


class _ProgressCounter:
    def __init__(self, total: int, callback: Progress | None) -> None:
        self.total, self.done, self.callback = total, 0, callback
        self._last = 0.0

    def step(self) -> None:
        self.done += 1
        now = time.monotonic()
        if self.callback and (now - self._last >= 1.0 or self.done == self.total):
            self._last = now
            self.callback(self.done, self.total)


def _rows(
    cands: list[_Candidate],
    config: TrainerConfig,
    store: S3Store,
    pool: ProcessPoolExecutor,
    n_workers: int,
    skips: SkipLog,
    progress: _ProgressCounter,
    limit: int | None,
) -> Iterator[dict[str, Any]]:
    """Rows in input order; at most `window` samples downloaded or decoded at any time."""
    ds = config.spec.dataset
    listing_prefix = ds.uri if ds.uri.endswith("/") else ds.uri + "/"

    def fetch(i: int) -> Future[Any] | tuple[str, str]:
        c = cands[i]
        s = c.sample
        if s.audio_etag is None and s.audio_uri.startswith(listing_prefix):
            return Skip.MISSING_AUDIO, f"not found under {listing_prefix} ({s.source})"
        try:
            path = store.cached(s.audio_uri, s.audio_etag)
        except TrainerFailure as err:
            if err.reason == Reason.S3_NOT_FOUND:
                return Skip.MISSING_AUDIO, err.message
            raise
        job = ClipJob(i, str(path), s.audio_uri, ds.min_duration_seconds, ds.max_duration_seconds)
        return pool.submit(process_clip, job)

    window = n_workers * 4 + store.concurrency
    written = 0
    with ThreadPoolExecutor(store.concurrency) as threads:
        pending: deque[tuple[int, Future[Any]]] = deque()
        next_i = 0
        while next_i < len(cands) or pending:
            while next_i < len(cands) and len(pending) < window:
                pending.append((next_i, threads.submit(fetch, next_i)))
                next_i += 1
            i, fetched = pending.popleft()
            first = fetched.result()  # re-raises AccessDenied and friends
            c = cands[i]
            progress.step()
            if isinstance(first, tuple):
                skips.add(first[0], c.sample.audio_uri, first[1])
                continue
            _, status, payload, seconds = first.result()
            if status != "ok":
                skips.add(status, c.sample.audio_uri, payload)
                continue
            yield {
                "input_features": payload,
                "labels": c.labels,
                "text": c.text,
                "audio": c.sample.audio_uri,
                "duration": seconds,
            }
            written += 1
            if limit is not None and written >= limit:
                for _, f in pending:
                    f.cancel()
                return


# -- checks, fingerprint, caches ----------------------------------------------------------------


def _verdict(config: TrainerConfig, found: _Found) -> TrainerFailure | None:
    """Every reason this dataset cannot be trained on, in one failure (None: it can be)."""
    ds = config.spec.dataset
    skips = found.skips
    n_train = found.writers["train"].rows if "train" in found.writers else 0
    candidates = sum(w.rows for w in found.writers.values()) + skips.total
    reasons = ", ".join(f"{r}: {n}" for r, n in sorted(skips.counts.items()))
    problems = [p.message for p in found.problems]
    if candidates and skips.total / candidates > ds.max_skipped_fraction:
        examples = "; ".join(
            f"{e['file']} ({e['reason']}: {e['detail']})" for e in skips.examples[:3]
        )
        problems.append(
            f"{skips.total} of {candidates} samples skipped ({skips.total / candidates:.0%}), more "
            f"than spec.dataset.maxSkippedFraction={ds.max_skipped_fraction} ({reasons}). "
            f"For example: {examples}"
        )
    if n_train < 1:
        if not problems:
            return TrainerFailure(
                Reason.TOO_FEW_SAMPLES,
                f"no usable training samples in {ds.uri} ({skips.total} skipped: "
                f"{reasons or 'none'})",
            )
        problems.append("no usable training samples remain")
    if not problems:
        return None
    if len(problems) == 1:
        reason = found.problems[0].reason if found.problems else Reason.BAD_DATA
        return TrainerFailure(reason, problems[0])
    listed = "; ".join(f"({i}) {p}" for i, p in enumerate(problems, start=1))
    return bad_data(f"{len(problems)} problems with the dataset: {listed}")


def _fingerprint(config: TrainerConfig, processor: Any, listing: Listing, fmt: str) -> str:
    spec = config.spec
    fe = processor.feature_extractor
    tok = processor.tokenizer
    settings = {
        "version": PIPELINE_VERSION,
        "format": fmt,
        "dataset": spec.dataset.model_dump(exclude={"cache_uri"}, mode="json"),
        "normalization": spec.preprocessing.normalization,
        "language": spec.language,
        "task": spec.task,
        "features": [fe.feature_size, fe.sampling_rate, fe.n_fft, fe.hop_length, fe.n_samples],
        "tokenizer": [type(tok).__name__, len(tok), tok.prefix_tokens],
    }
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for rel in sorted(listing.objects):
        h.update(f"\0{rel}\0{listing.objects[rel].etag}".encode())
    return h.hexdigest()[:24]


def _reuse(out: Path, cache_uri: str | None, fingerprint: str, store: S3Store) -> str | None:
    if (out / SUCCESS).exists():
        return "local"
    if cache_uri and store.get_folder(cache_uri.rstrip("/") + f"/{fingerprint}/", out, SUCCESS):
        return "s3"
    return None


def fetch_prepared(
    work_dir: Path, fingerprint: str, uri: str | None, store: S3Store
) -> PreparedData:
    """Rank 0's prepared data for another rank: the folder `prepare` made on this node's disk
    (`work_dir` as given to it), else rank 0's copy at `uri` (another node). Nothing is listed,
    fetched or decoded from the dataset: a dataset that changed since rank 0 listed it cannot
    give this rank other samples than rank 0's."""
    started = time.monotonic()
    stats_before = dict(store.stats)
    out = Path(work_dir) / "prepared" / fingerprint
    if (out / SUCCESS).exists():
        reused = "local"
    elif uri and store.get_folder(uri, out, SUCCESS):
        reused = "s3"
    else:
        where = uri or str(out)
        raise TrainerFailure(
            Reason.TRAINER_ERROR,
            f"rank 0's prepared data is not in {where}: it was deleted while the run started; "
            "the Job's retry prepares it again",
        )
    return _load(out, reused, {}, started, store, stats_before)


def _load(
    out: Path,
    reused: str,
    timings: dict[str, float],
    started: float,
    store: S3Store,
    stats_before: dict[str, int],
) -> PreparedData:
    report = PrepareReport.model_validate(json.loads((out / "report.json").read_text()))
    report.reused = reused
    # What this run fetched (the cached dataset itself when it came from S3), not the first run.
    report.downloaded_files = store.stats["downloads"] - stats_before["downloads"]
    report.downloaded_bytes = store.stats["bytes_downloaded"] - stats_before["bytes_downloaded"]
    report.timings = {**timings, "total": time.monotonic() - started}
    log.info("reusing prepared data %s (%s cache)", out, reused)
    return PreparedData(
        train=load_split(out / "train"),
        eval=load_split(out / "eval") if report.eval_samples else None,
        report=report,
        path=out,
        general=load_split(out / "general") if report.general_eval_samples else None,
    )


def _upload_cache(local: Path, cache_uri: str, fingerprint: str, store: S3Store) -> None:
    """Best effort: a cache that cannot be written costs the next node time, not this run."""
    remote = cache_uri.rstrip("/") + f"/{fingerprint}/"
    try:
        store.put_folder(local, remote, SUCCESS, fingerprint.encode())
    except TrainerFailure as err:
        log.warning("could not write the prepared-data cache %s: %s", remote, err.message)
