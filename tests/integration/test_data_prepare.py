"""The data stage against moto's S3 server, with real espeak-ng speech and real decoders.

What a user notices: every clip reaches the model at 16 kHz mono whatever its rate, channels and
container; bad files are skipped and counted by reason, never fatal; transcripts are normalized;
a second run downloads nothing; throttling and dropped connections do not fail the run; access
denied names the bucket and key.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from wft_api.conditions import Reason
from wft_api.v1alpha1 import TrainerConfig
from wft_local.speech import silence, synthesize, write_audio
from wft_trainer.data import prepare
from wft_trainer.errors import TrainerFailure
from wft_trainer.storage import S3Store

pytestmark = pytest.mark.integration

PREFIX_IDS = [50258, 50259, 50360, 50364]  # <|sot|><|en|><|transcribe|><|notimestamps|>
EOT = 50257
PHRASES = [
    "hello world",
    "the cat sat on the mat",
    "good morning everyone",
    "open the door please",
    "speech recognition is fun",
    "one two three four",
    "turn left at the station",
    "the weather is nice today",
    "please call me back tomorrow",
]
# (rate, stereo, extension): every rate, both channel layouts, every soundfile container, and
# m4a/AAC, which only ffmpeg decodes.
VARIANTS = [
    (8000, False, "wav"),
    (22050, True, "flac"),
    (44100, False, "mp3"),
    (48000, True, "ogg"),
    (48000, False, "wav"),
    (8000, True, "mp3"),
    (44100, True, "flac"),
    (22050, False, "ogg"),
    (44100, True, "m4a"),
]


@pytest.fixture(scope="module")
def processor(tiny_model_dir: Path) -> Any:
    from wft_api.v1alpha1 import WhisperFineTuneSpec
    from wft_trainer.models.source import BaseModel, load_processor

    spec = WhisperFineTuneSpec.model_validate(
        {"dataset": {"uri": "s3://x-data/"}, "output": {"uri": "s3://x-out/"}}
    )
    base = BaseModel(path=str(tiny_model_dir), english_only=False, origin="test")
    return load_processor(base, spec)


@pytest.fixture
def store(aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> S3Store:
    monkeypatch.setenv("WFT_CACHE_DIR", str(tmp_path / "cache"))
    return S3Store.from_spec()


def config(uri: str, **dataset: Any) -> TrainerConfig:
    return TrainerConfig.model_validate(
        {
            "resource": {"name": "t"},
            "spec": {"dataset": {"uri": uri, **dataset}, "output": {"uri": "s3://x-out/"}},
        }
    )


def upload_speech(
    store: S3Store, tmp: Path, uri: str, name: str, text: str, rate: int, stereo: bool, ext: str
) -> float:
    """Synthesize, encode and upload one clip; return its true duration in seconds."""
    samples, native = synthesize(text)
    # Low noise (-40 dBFS) to the last sample: espeak-ng ends in digital silence, which would
    # look like Whisper's zero padding and hide where the clip really ends.
    noise = np.random.default_rng(len(text)).standard_normal(samples.size).astype(np.float32)
    samples = samples + 0.01 * noise
    path = write_audio(tmp / name, samples, native, target_rate_hz=rate, stereo=stereo)
    store.upload_file(path, uri + name)
    return len(samples) / native


def count_gets(store: S3Store) -> list[str]:
    seen: list[str] = []
    store.client.meta.events.register(
        "before-send.s3.GetObject", lambda request, **_: seen.append(request.url)
    )
    return seen


def speech_frames(features: np.ndarray) -> int:
    """Frames before the constant tail that Whisper's zero padding leaves (100 per second)."""
    cols = np.asarray(features, dtype=np.float32)
    tail = cols[:, -1:]
    differs = np.nonzero(np.any(np.abs(cols - tail) > 1e-3, axis=0))[0]
    return int(differs[-1]) + 1 if differs.size else 0


def test_mixed_corpus_rates_formats_skips_and_cache(
    store: S3Store, processor: Any, tmp_path: Path
) -> None:
    store.client.create_bucket(Bucket="mixed")
    uri = "s3://mixed/corpus/"
    durations: dict[str, float] = {}
    lines = []
    for i, (rate, stereo, ext) in enumerate(VARIANTS):
        name = f"audio/clip{i}_{rate}_{'st' if stereo else 'mo'}.{ext}"
        text = PHRASES[i]
        durations[uri + name] = upload_speech(store, tmp_path, uri, name, text, rate, stereo, ext)
        # Markup and control characters the clean normalization must remove.
        lines.append(json.dumps({"audio_filepath": name, "text": f"{text} [noise]\u200b <unk>"}))
    good = len(lines)

    # Corrupt and unusable files, each under the reason the user will see.
    wav = io.BytesIO()
    speech, rate = synthesize("this file is cut in half")
    sf.write(wav, speech, rate, format="WAV", subtype="PCM_16")
    store.put_bytes(uri + "bad/truncated.wav", wav.getvalue()[: len(wav.getvalue()) // 2])
    store.put_bytes(uri + "bad/empty.wav", b"")
    store.put_bytes(uri + "bad/text.wav", b"this is not audio, just text named .wav\n" * 20)
    write_audio(tmp_path / "silence.flac", silence(2.0), 16000)
    store.upload_file(tmp_path / "silence.flac", uri + "bad/silence.flac")
    long_clip = np.tile(speech, 4)  # about 7 s, over the 5 s limit below
    write_audio(tmp_path / "long.wav", long_clip, rate)
    store.upload_file(tmp_path / "long.wav", uri + "bad/long.wav")
    write_audio(tmp_path / "short.wav", speech[: rate // 20], rate)  # 50 ms
    store.upload_file(tmp_path / "short.wav", uri + "bad/short.wav")
    first = next(iter(durations)).removeprefix(uri)
    bad = [
        {"audio_filepath": "bad/truncated.wav", "text": "cut in half"},
        {"audio_filepath": "bad/empty.wav", "text": "empty"},
        {"audio_filepath": "bad/text.wav", "text": "not audio"},
        {"audio_filepath": "bad/silence.flac", "text": "nothing said"},
        {"audio_filepath": "bad/long.wav", "text": "too long"},
        {"audio_filepath": "bad/short.wav", "text": "too short"},
        {"audio_filepath": "bad/missing.wav", "text": "no such file"},
        {"audio_filepath": first, "text": " [laughter] <unk> "},
        {"audio_filepath": first, "text": "word " * 500},
        {"audio_filepath": first},
        {"text": "no audio path"},
    ]
    manifest = "\n".join(lines + [json.dumps(b) for b in bad] + ["{not json"]).encode()
    # A line whose transcript is not UTF-8 (Latin-1 bytes).
    manifest += b'\n{"audio_filepath": "' + first.encode() + b'", "text": "caf\xe9"}\n'
    store.put_bytes(uri + "manifest.jsonl", manifest)

    cfg = config(uri, maxDurationSeconds=5, maxSkippedFraction=0.7, evalFraction=0.25)
    gets = count_gets(store)
    data = prepare(cfg, processor, tmp_path / "work1", store, workers=2)
    report = data.report

    assert report.format == "manifest" and report.format_detected
    assert report.skipped_reasons == {
        "undecodable_audio": 3,
        "silence": 1,
        "too_long": 1,
        "too_short": 1,
        "missing_audio": 1,
        "empty_transcript": 1,
        "label_too_long": 1,
        "missing_transcript": 1,
        "bad_manifest_line": 2,
        "undecodable_text": 1,
    }
    assert report.skipped == 13 and report.candidates == good + 13
    assert report.samples + report.eval_samples == good
    assert {e.reason for e in report.skipped_examples} == set(report.skipped_reasons)
    truncated = next(e for e in report.skipped_examples if "truncated" in e.file)
    assert "truncated" in truncated.detail

    rows = [*data.train, *(data.eval or [])]
    assert len(rows) == good
    for row in rows:
        feats = np.asarray(row["input_features"])
        assert feats.shape == (80, 3000)
        true_seconds = durations[row["audio"]]
        # Length survives decoding and resampling (lossy encoders pad a few ms) ...
        assert row["duration"] == pytest.approx(true_seconds, abs=0.08)
        # ... and the features run at 100 frames per second: the audio really is 16 kHz.
        assert speech_frames(feats) == pytest.approx(row["duration"] * 100, abs=4)
        assert row["labels"][:4] == PREFIX_IDS and row["labels"][-1] == EOT
        assert row["text"] in PHRASES  # markup, zero-width space and <unk> gone
        assert processor.tokenizer.decode(row["labels"], skip_special_tokens=True) == row["text"]
    assert report.hours == pytest.approx(sum(r["duration"] for r in data.train) / 3600, rel=1e-4)

    # The eval split is a function of the audio path alone.
    def held_out(u: str) -> bool:
        digest = hashlib.sha256(u.removeprefix(uri).encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < 0.25

    assert {r["audio"] for r in data.eval or []} == {u for u in durations if held_out(u)}
    assert len(gets) > good

    # Same data, new work dir, same download cache: no GET at all, the same split and rows.
    gets.clear()
    again = prepare(cfg, processor, tmp_path / "work2", store, workers=2)
    assert gets == []
    assert again.report.reused is None and again.report.downloaded_files == 0
    assert [r["audio"] for r in again.train] == [r["audio"] for r in data.train]
    assert again.report.skipped_reasons == report.skipped_reasons

    # Same work dir: the prepared dataset itself is reused, nothing recomputed.
    reused = prepare(cfg, processor, tmp_path / "work1", store, workers=2)
    assert gets == [] and reused.report.reused == "local"
    assert reused.path == data.path and len(reused.train) == len(data.train)


def test_audiofolder_and_pairs_are_detected(store: S3Store, processor: Any, tmp_path: Path) -> None:
    store.client.create_bucket(Bucket="layouts")
    folder, pairs = "s3://layouts/af/", "s3://layouts/pairs/"
    rows = ["file_name,speaker,sentence"]
    for i in range(3):
        upload_speech(store, tmp_path, folder, f"clips/c{i}.flac", PHRASES[i], 22050, False, "flac")
        rows.append(f'clips/c{i}.flac,s{i},"{PHRASES[i].capitalize()}, (laughs) okay."')
    store.put_bytes(folder + "metadata.csv", "\n".join(rows).encode())
    for i in range(3):
        upload_speech(store, tmp_path, pairs, f"p{i}.ogg", PHRASES[i], 48000, True, "ogg")
        store.put_bytes(pairs + f"p{i}.txt", f"  {PHRASES[i]}\n".encode())
    upload_speech(store, tmp_path, pairs, "orphan.wav", "no transcript", 16000, False, "wav")
    upload_speech(store, tmp_path, pairs, "latin1.wav", "cafe", 16000, False, "wav")
    store.put_bytes(pairs + "latin1.txt", "café crème".encode("latin-1"))

    af = prepare(config(folder, evalFraction=0), processor, tmp_path / "w1", store, workers=2)
    assert af.report.format == "audiofolder" and af.report.samples == 3 and af.eval is None
    assert sorted(af.train["text"]) == sorted(f"{p.capitalize()}, okay." for p in PHRASES[:3])

    cfg = config(pairs, evalFraction=0, maxSkippedFraction=0.5)
    pr = prepare(cfg, processor, tmp_path / "w2", store, workers=2)
    assert pr.report.format == "pairs" and pr.report.samples == 3
    assert pr.report.skipped_reasons == {"missing_transcript": 1, "undecodable_text": 1}
    assert sorted(pr.train["text"]) == sorted(PHRASES[:3])


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Any:
        yield self.body


def test_throttling_and_dropped_connections_are_retried(
    store: S3Store, processor: Any, tmp_path: Path
) -> None:
    from botocore.awsrequest import AWSResponse
    from botocore.exceptions import ConnectionClosedError

    store.client.create_bucket(Bucket="flaky")
    uri = "s3://flaky/d/"
    lines = []
    for i in range(4):
        upload_speech(store, tmp_path, uri, f"a{i}.wav", PHRASES[i], 16000, False, "wav")
        lines.append(json.dumps({"audio_filepath": f"a{i}.wav", "text": PHRASES[i]}))
    store.put_bytes(uri + "train.jsonl", "\n".join(lines).encode())
    injected = {"slowdown": 0, "dropped": 0, "calls": 0}

    def faults(request: Any, **_: Any) -> Any:
        injected["calls"] += 1
        if injected["calls"] % 3 == 1:  # the first try of many requests: 503 SlowDown
            injected["slowdown"] += 1
            body = b"<Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>"
            return AWSResponse(request.url, 503, {"Content-Type": "application/xml"}, _Raw(body))
        if injected["calls"] % 3 == 2 and injected["dropped"] < 3:
            injected["dropped"] += 1
            raise ConnectionClosedError(endpoint_url=request.url)
        return None

    store.client.meta.events.register("before-send.s3", faults)
    data = prepare(config(uri, evalFraction=0), processor, tmp_path / "w", store, workers=2)
    assert data.report.samples == 4 and data.report.skipped == 0
    assert injected["slowdown"] >= 3 and injected["dropped"] == 3


def test_access_denied_names_bucket_and_key(store: S3Store, processor: Any, tmp_path: Path) -> None:
    from botocore.awsrequest import AWSResponse

    store.client.create_bucket(Bucket="locked")
    uri = "s3://locked/d/"
    upload_speech(store, tmp_path, uri, "secret.wav", PHRASES[0], 16000, False, "wav")
    store.put_bytes(uri + "manifest.jsonl", b'{"audio_filepath": "secret.wav", "text": "hi"}')

    def deny(request: Any, **_: Any) -> Any:
        if request.url.endswith("/secret.wav"):
            body = b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
            return AWSResponse(request.url, 403, {}, _Raw(body))
        return None

    store.client.meta.events.register("before-send.s3.GetObject", deny)
    with pytest.raises(TrainerFailure) as caught:
        prepare(config(uri, evalFraction=0), processor, tmp_path / "w", store, workers=1)
    assert caught.value.reason == Reason.S3_ACCESS_DENIED
    assert "s3://locked/d/secret.wav" in caught.value.message
    assert "credentialsSecret" in caught.value.message


def test_too_many_skipped_fails_with_the_reasons(
    store: S3Store, processor: Any, tmp_path: Path
) -> None:
    store.client.create_bucket(Bucket="mostly-bad")
    uri = "s3://mostly-bad/d/"
    upload_speech(store, tmp_path, uri, "ok.wav", PHRASES[0], 16000, False, "wav")
    lines = [{"audio_filepath": "ok.wav", "text": "fine"}] + [
        {"audio_filepath": "ok.wav", "text": "[noise]"} for _ in range(3)
    ]
    store.put_bytes(uri + "manifest.jsonl", "\n".join(map(json.dumps, lines)).encode())
    with pytest.raises(TrainerFailure) as caught:
        prepare(config(uri, evalFraction=0), processor, tmp_path / "w", store, workers=1)
    assert caught.value.reason == Reason.BAD_DATA
    assert "3 of 4 samples skipped" in caught.value.message
    assert "maxSkippedFraction=0.2" in caught.value.message
    assert "empty_transcript: 3" in caught.value.message


def test_wft_prepare_cli_end_to_end(
    store: S3Store,
    tiny_model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from wft_cli.main import main

    store.client.create_bucket(Bucket="cli-data")
    uri = "s3://cli-data/set/"
    store.upload_dir(tiny_model_dir, "s3://cli-data/models/tiny/")
    lines = []
    for i in range(4):
        upload_speech(store, tmp_path, uri, f"a{i}.mp3", PHRASES[i], 44100, True, "mp3")
        lines.append(json.dumps({"audio_filepath": f"a{i}.mp3", "text": PHRASES[i].upper()}))
    lines.append(json.dumps({"audio_filepath": "gone.wav", "text": "missing"}))
    store.put_bytes(uri + "manifest.jsonl", "\n".join(lines).encode())
    spec = f"""
apiVersion: wft.dev/v1alpha1
kind: WhisperFineTune
metadata: {{name: cli}}
spec:
  baseModel: s3://cli-data/models/tiny/
  dataset: {{uri: {uri}, evalFraction: 0, maxSkippedFraction: 0.5}}
  preprocessing: {{normalization: whisper-basic}}
  output: {{uri: s3://cli-data/out/}}
"""
    (tmp_path / "ft.yaml").write_text(spec)
    out = tmp_path / "out"
    code = main(["prepare", "-f", str(tmp_path / "ft.yaml"), "--out", str(out), "--workers", "2"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    report = json.loads((out / "report.json").read_text())
    assert report["format"] == "manifest"
    assert report["samples"] == 4 and report["evalSamples"] == 0 and report["skipped"] == 1
    assert report["skippedReasons"] == {"missing_audio": 1}
    assert report["skippedExamples"][0]["file"] == uri + "gone.wav"
    assert report["hours"] > 0
    assert "samples: 4 train" in printed.out and "missing_audio: 1" in printed.out
    import datasets

    train = datasets.load_from_disk(next(out.glob("prepared/*/train")).as_posix())
    assert sorted(train["text"]) == sorted(PHRASES[:4])  # whisper-basic: lowercase

    # An invalid spec and a denied bucket end with a message, exit code 1, no traceback.
    (tmp_path / "bad.yaml").write_text(spec.replace("evalFraction: 0", "evalFraction: 2"))
    assert main(["prepare", "-f", str(tmp_path / "bad.yaml"), "--out", str(out)]) == 1
    assert "evalFraction" in capsys.readouterr().err
    (tmp_path / "nob.yaml").write_text(spec.replace("s3://cli-data/set/", "s3://no-bucket/x/"))
    assert main(["prepare", "-f", str(tmp_path / "nob.yaml"), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "S3NotFound" in err and "no-bucket" in err and "Traceback" not in err


def test_a_general_eval_manifest_is_its_own_split_cached_with_the_rest(
    store: S3Store, processor: Any, tmp_path: Path
) -> None:
    """generalEvalManifest: never mistaken for the training manifest when the format and the
    manifest are detected, prepared beside train and eval, part of the fingerprint, and back
    from the S3 cache on a fresh machine."""
    store.client.create_bucket(Bucket="general")
    uri = "s3://general/set/"
    manifests: dict[str, list[str]] = {"train": [], "heldout": [], "everyday": []}
    for i, split in enumerate(["train"] * 3 + ["heldout", "everyday", "everyday"]):
        name = f"{split}/{i}.wav"
        upload_speech(store, tmp_path, uri, name, PHRASES[i], 16000, False, "wav")
        manifests[split].append(json.dumps({"audio_filepath": name, "text": PHRASES[i]}))
    for split, rows in manifests.items():
        store.put_bytes(f"{uri}{split}.jsonl", ("\n".join(rows) + "\n").encode())

    # Three .jsonl files, two named as evaluation: the third is the training manifest.
    cfg = config(
        uri,
        evalManifest="heldout.jsonl",
        generalEvalManifest="everyday.jsonl",
        cacheUri="s3://general/cache/",
    )
    data = prepare(cfg, processor, tmp_path / "w1", store)
    assert data.report.format == "manifest" and data.report.format_detected
    assert (data.report.samples, data.report.eval_samples) == (3, 1)
    assert data.report.general_eval_samples == 2 and len(data.general) == 2
    assert sorted(data.general["text"]) == sorted(PHRASES[4:6])

    without = prepare(config(uri, evalManifest="heldout.jsonl"), processor, tmp_path / "w0", store)
    assert without.general is None and without.report.fingerprint != data.report.fingerprint

    again = prepare(cfg, processor, tmp_path / "fresh", store)  # another node: the S3 cache
    assert again.report.reused == "s3" and len(again.general) == 2
