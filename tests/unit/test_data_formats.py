"""Dataset layouts parsed without S3: what becomes a sample, what is skipped and why."""

from __future__ import annotations

import json

import pytest
from wft_trainer.data.formats import (
    Listing,
    detect_format,
    is_eval,
    pair_samples,
    parse_audiofolder,
    parse_manifest,
)
from wft_trainer.data.samples import SkipLog
from wft_trainer.errors import TrainerFailure
from wft_trainer.storage import S3Object

BASE = "s3://data/set/"


def listing(*names: str) -> Listing:
    return Listing.of(BASE, [S3Object("set/" + n, 10, f"etag-{n}") for n in names])


def test_manifest_relative_and_absolute_paths() -> None:
    ls = listing("a/one.wav", "manifest.jsonl")
    lines = [
        {"audio_filepath": "a/one.wav", "text": "one", "duration": 1.5},
        {"audio_filepath": "./a/one.wav", "text": "again"},
        {"audio_filepath": "s3://other/x.flac", "text": "elsewhere"},
    ]
    skips = SkipLog()
    samples = parse_manifest("\n".join(map(json.dumps, lines)).encode(), "m", ls, skips)
    assert [s.audio_uri for s in samples] == [BASE + "a/one.wav", BASE + "a/one.wav",
                                             "s3://other/x.flac"]  # fmt: skip
    assert samples[0].audio_etag == "etag-a/one.wav" and samples[0].duration == 1.5
    assert samples[2].audio_etag is None  # outside the listing: looked up when fetched
    assert skips.total == 0


def test_manifest_bad_lines_are_counted_not_fatal() -> None:
    data = b"\n".join(
        [
            b'{"audio_filepath": "a.wav", "text": "ok"}',
            b"{broken",
            b'["a list"]',
            b'{"text": "no path"}',
            b'{"audio_filepath": "b.wav"}',
            b'{"audio_filepath": "c.wav", "text": 3}',
            b'{"audio_filepath": "d.wav", "text": "caf\xe9"}',
            b"",
        ]
    )
    skips = SkipLog()
    samples = parse_manifest(data, "m.jsonl", listing("a.wav"), skips)
    assert [s.text for s in samples] == ["ok"]
    assert skips.counts == {"bad_manifest_line": 4, "missing_transcript": 1, "undecodable_text": 1}
    assert {"file": "m.jsonl:2", "reason": "bad_manifest_line"}.items() <= skips.examples[0].items()


def test_audiofolder_finds_the_transcription_column() -> None:
    csv = b'file_name,Sentence\nclips/a.wav,"Hello, there"\nclips/b.wav\n,orphan\n'
    skips = SkipLog()
    ls = listing("clips/a.wav", "clips/b.wav", "metadata.csv")
    samples = parse_audiofolder(csv, "metadata.csv", ls, skips)
    assert [(s.audio_uri, s.text) for s in samples] == [(BASE + "clips/a.wav", "Hello, there")]
    assert skips.counts == {"missing_transcript": 1, "bad_manifest_line": 1}


def test_audiofolder_without_a_transcription_column_names_the_choices() -> None:
    with pytest.raises(TrainerFailure, match="transcription, text, sentence, transcript"):
        parse_audiofolder(b"file_name,label\na.wav,x\n", "metadata.csv", listing(), SkipLog())


def test_pairs_match_audio_and_text_by_name() -> None:
    ls = listing("x/a.wav", "x/a.txt", "b.FLAC", "b.txt", "c.mp3", "d.txt", "notes.md")
    skips = SkipLog()
    samples = pair_samples(ls, skips)
    assert [(s.audio_uri, s.text_uri) for s in samples] == [
        (BASE + "b.FLAC", BASE + "b.txt"),
        (BASE + "x/a.wav", BASE + "x/a.txt"),
    ]
    assert skips.counts == {"missing_transcript": 1, "missing_audio": 1}


def test_detection_prefers_manifest_then_metadata_then_pairs() -> None:
    assert detect_format(listing("train.jsonl", "metadata.csv", "a.wav", "a.txt")) == "manifest"
    assert detect_format(listing("metadata.csv", "a.wav", "a.txt")) == "audiofolder"
    assert detect_format(listing("a.opus", "a.txt")) == "pairs"
    # An eval manifest alone is not the training manifest.
    assert detect_format(listing("eval.jsonl", "a.wav", "a.txt"), ["eval.jsonl"]) == "pairs"
    with pytest.raises(TrainerFailure, match=r"found: a\.wav, readme\.md"):
        detect_format(listing("a.wav", "readme.md"))


def test_eval_split_is_deterministic_and_near_the_fraction() -> None:
    keys = [f"clips/{i}.wav" for i in range(2000)]
    first = [k for k in keys if is_eval(k, 0.1)]
    assert first == [k for k in keys if is_eval(k, 0.1)]
    assert 150 < len(first) < 250
    assert set(first) <= {k for k in keys if is_eval(k, 0.3)}  # growing the fraction only adds
    assert not any(is_eval(k, 0.0) for k in keys)
