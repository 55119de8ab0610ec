"""Careless and hostile datasets, as a user meets them through `wft prepare`, `wft train` and the
Job: NaN, infinite and absurdly loud float audio is skipped under its own reason (and a run with
one such clip among good ones trains a finite adapter); a 10-minute clip is refused from its
header; duplicates, conflicting transcripts and transcripts in another script are counted; a bad
dataset is reported in one pass, with report.json and status.dataset on failure too.

Real files (soundfile, espeak-ng), real decoders, moto's S3 server over HTTP, the tiny
config-built Whisper, the embedded Kubernetes API.
"""

from __future__ import annotations

import json
import signal
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
import soundfile as sf
import yaml
from wft_local.kube_api import EmbeddedKubernetes
from wft_local.speech import synthesize
from wft_trainer.data.audio import ffmpeg_binary
from wft_trainer.storage import S3Store

from .test_data_prepare import PHRASES, upload_speech
from .test_data_prepare import store as store
from .trainer_fixtures import spec, stage_s3

pytestmark = pytest.mark.integration

GROUP, VERSION, PLURAL = "wft.dev", "v1alpha1", "whisperfinetunes"


def resource_yaml(path: Path, body: dict[str, Any], name: str = "bad-data") -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "wft.dev/v1alpha1",
                "kind": "WhisperFineTune",
                "metadata": {"name": name},
                "spec": body,
            }
        )
    )
    return path


def prepare_spec(bucket: str, uri: str, **dataset: Any) -> dict[str, Any]:
    return {
        "baseModel": f"s3://{bucket}/models/tiny/",
        "language": "en",
        "dataset": {"uri": uri, "evalFraction": 0, **dataset},
        "output": {"uri": f"s3://{bucket}/out/"},
    }


def speech(text: str) -> tuple[np.ndarray, int]:
    samples, rate = synthesize(text)
    noise = np.random.default_rng(len(text)).standard_normal(samples.size).astype(np.float32)
    return samples + 0.01 * noise, rate


def put_float_wav(
    s3store: S3Store, tmp: Path, uri: str, name: str, samples: np.ndarray, rate: int
) -> None:
    path = tmp / name.replace("/", "_")
    sf.write(path, samples, rate, subtype="FLOAT")  # 32-bit float WAV: holds NaN and 1e30
    s3store.upload_file(path, uri + name)


def wft(*args: str) -> int:
    from wft_cli.main import main

    return main(list(args))


def test_nan_inf_and_absurd_amplitudes_are_skipped_by_wft_prepare(
    store: S3Store,
    tiny_model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store.client.create_bucket(Bucket="float-audio")
    uri = "s3://float-audio/set/"
    store.upload_dir(tiny_model_dir, "s3://float-audio/models/tiny/")
    lines = []
    for i in range(6):  # good clips, some of them float WAV that peak a little over 1.0
        samples, rate = speech(PHRASES[i])
        if i % 2:
            put_float_wav(store, tmp_path, uri, f"good{i}.wav", samples * 1.4, rate)
        else:
            upload_speech(store, tmp_path, uri, f"good{i}.wav", PHRASES[i], 16000, False, "wav")
        lines.append({"audio_filepath": f"good{i}.wav", "text": PHRASES[i]})
    samples, rate = speech("one bad sample")
    nan, inf = samples.copy(), samples.copy()
    nan[rate // 2] = np.nan  # one NaN at 0.5 s
    inf[rate] = -np.inf
    bad = {
        "nan.wav": nan,
        "inf.wav": inf,
        "huge.wav": np.full_like(samples, 1e30) * np.sign(samples + 1e-9),
        "int16-as-float.wav": np.round(samples * 32767),  # the classic scaling mistake
    }
    for name, data in bad.items():
        put_float_wav(store, tmp_path, uri, name, data, rate)
        lines.append({"audio_filepath": name, "text": "one bad sample"})
    store.put_bytes(uri + "manifest.jsonl", "\n".join(map(json.dumps, lines)).encode())
    ft = resource_yaml(
        tmp_path / "ft.yaml", prepare_spec("float-audio", uri, maxSkippedFraction=0.5)
    )
    out = tmp_path / "out"

    assert wft("prepare", "-f", str(ft), "--out", str(out), "--quiet", "--workers", "2") == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["samples"] == 6 and report["skipped"] == 4
    assert report["skippedReasons"] == {"non_finite_audio": 2, "amplitude_out_of_range": 2}
    details = {f["file"].removeprefix(uri): f["detail"] for f in report["skippedFiles"]}
    assert details["nan.wav"].startswith("1 of ") and "the first at 0.50 s" in details["nan.wav"]
    assert "NaN or infinite" in details["inf.wav"]
    assert "peak amplitude 1e+30" in details["huge.wav"]
    assert "int16 values written as float" in details["int16-as-float.wav"]
    assert "non_finite_audio: 2" in printed and "amplitude_out_of_range: 2" in printed
    import datasets

    train = datasets.load_from_disk(str(next(out.glob("prepared/*/train"))))
    assert np.isfinite(np.asarray(train.with_format("numpy")["input_features"])).all()


def test_wft_train_skips_a_nan_clip_and_publishes_a_finite_adapter(
    aws_env: str, tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's run: one float WAV with a NaN among the good clips. Before, 0 skipped, loss
    NaN, every adapter weight NaN, _SUCCESS written. Now: 1 skipped, a finite adapter."""
    from safetensors.torch import load

    s3 = boto3.client("s3")
    stage_s3(s3, tmp_path, tiny_model_dir, "one-nan", n_train=12)
    samples, rate = speech("the heart rate is regular")
    samples[rate // 3] = np.nan
    sf.write(tmp_path / "nan.wav", samples, rate, subtype="FLOAT")
    s3.upload_file(str(tmp_path / "nan.wav"), "one-nan", "data/clips/nan.wav")
    manifest = s3.get_object(Bucket="one-nan", Key="data/train.jsonl")["Body"].read().decode()
    manifest += json.dumps({"audio_filepath": "clips/nan.wav", "text": "the heart rate"}) + "\n"
    s3.put_object(Bucket="one-nan", Key="data/train.jsonl", Body=manifest.encode())
    body = spec("one-nan", maxSteps=8, checkpointSteps=100)
    ft = resource_yaml(tmp_path / "ft.yaml", body, name="one-nan")

    code = wft("train", "-f", str(ft), "--work-dir", str(tmp_path / "work"), "--no-progress")
    assert code == 0, capsys.readouterr().err
    run = "out/default/one-nan/generation-1/"
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="one-nan", Prefix=run)["Contents"]}
    assert run + "_SUCCESS" in keys
    report = json.loads(s3.get_object(Bucket="one-nan", Key=run + "report.json")["Body"].read())
    assert report["skippedReasons"] == {"non_finite_audio": 1} and report["samples"] == 12
    metrics = json.loads(s3.get_object(Bucket="one-nan", Key=run + "metrics.json")["Body"].read())
    assert all(np.isfinite(loss) for _, loss in metrics["lossCurve"])
    weights = load(
        s3.get_object(Bucket="one-nan", Key=run + "adapter_model.safetensors")["Body"].read()
    )
    assert weights and all(bool(t.isfinite().all()) for t in weights.values())


def test_a_ten_minute_wav_is_refused_from_its_header_without_decoding(tmp_path: Path) -> None:
    """The issue's file: 10 minutes of 48 kHz 16-bit stereo, 115 MB. Before: about 400 MB and
    2.7 s to decode it whole and then refuse it. Now a header read: milliseconds, no samples."""
    from wft_trainer.data.features import ClipJob, process_clip
    from wft_trainer.data.samples import Skip

    path = tmp_path / "lecture.wav"
    with sf.SoundFile(path, "w", 48000, 2, subtype="PCM_16") as f:
        block = (0.1 * np.random.default_rng(0).standard_normal((48000 * 10, 2))).astype(np.float32)
        for _ in range(60):
            f.write(block)
    assert path.stat().st_size > 115_000_000
    tracemalloc.start()
    started = time.monotonic()
    try:
        _, reason, detail, _ = process_clip(ClipJob(0, str(path), "s3://b/lecture.wav", 0.1, 30.0))
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert reason == Skip.TOO_LONG
    assert detail == "600.00 s > 30 s (from the header, not decoded)"
    assert elapsed < 0.5 and peak < 5_000_000, (elapsed, peak)

    # m4a goes through ffmpeg, which has no header to trust here: it stops after 31 s.
    m4a = tmp_path / "long.m4a"
    import subprocess

    subprocess.run(
        [ffmpeg_binary(), "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
         "anoisesrc=d=120:a=0.1:r=16000", "-c:a", "aac", str(m4a)],
        check=True, timeout=120,
    )  # fmt: skip
    _, reason, detail, _ = process_clip(ClipJob(0, str(m4a), "s3://b/long.m4a", 0.1, 30.0))
    assert reason == Skip.TOO_LONG and detail == "at least 31.00 s > 30 s (stopped decoding)"


def test_duplicates_conflicts_long_files_and_scripts_are_counted_by_wft_prepare(
    store: S3Store,
    tiny_model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store.client.create_bucket(Bucket="truthful")
    uri = "s3://truthful/set/"
    store.upload_dir(tiny_model_dir, "s3://truthful/models/tiny/")
    lines = []
    for i in range(6):
        upload_speech(store, tmp_path, uri, f"c{i}.wav", PHRASES[i], 16000, False, "wav")
        lines.append({"audio_filepath": f"c{i}.wav", "text": PHRASES[i]})
    lines.append({"audio_filepath": "./c0.wav", "text": PHRASES[0]})  # the same line again
    lines.append({"audio_filepath": uri + "c0.wav", "text": PHRASES[0] + " "})  # and again
    for variant in ("open the door", "open the door please now", "close the door"):
        lines.append({"audio_filepath": "c3.wav", "text": variant})  # c3: four transcripts
    upload_speech(store, tmp_path, uri, "c6.wav", PHRASES[6], 16000, False, "wav")
    lines.append({"audio_filepath": "c6.wav", "text": "поверните налево у станции"})  # Cyrillic
    long_clip = tmp_path / "long.wav"
    sf.write(long_clip, np.zeros((16000 * 600, 1), np.float32) + 0.1, 16000, subtype="PCM_16")
    store.upload_file(long_clip, uri + "long.wav")
    lines.append({"audio_filepath": "long.wav", "text": "a ten minute lecture"})
    store.put_bytes(uri + "manifest.jsonl", "\n".join(map(json.dumps, lines)).encode())
    body = prepare_spec("truthful", uri, maxSkippedFraction=0.7)
    out = tmp_path / "out"

    ft = resource_yaml(tmp_path / "warn.yaml", body)
    assert wft("prepare", "-f", str(ft), "--out", str(out), "--quiet", "--workers", "2") == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["skippedReasons"] == {
        "duplicate_entry": 2,
        "conflicting_transcripts": 4,
        "too_long": 1,
    }
    files = report["skippedFiles"]
    conflict = next(f for f in files if f["reason"] == "conflicting_transcripts")
    assert conflict["file"] == uri + "c3.wav"
    assert "4 different transcripts for this audio in 4 entries" in conflict["detail"]
    duplicate = next(f for f in files if f["reason"] == "duplicate_entry")
    assert duplicate["file"] == uri + "c0.wav"
    assert (
        "manifest.jsonl:7: the same audio and transcript as manifest.jsonl:1" in duplicate["detail"]
    )
    long = next(f for f in files if f["reason"] == "too_long")
    assert long["detail"] == "600.00 s > 30 s (from the header, not decoded)"
    # The Cyrillic transcript under language en is kept and counted as a warning.
    assert report["samples"] == 6 and report["warnings"] == {"script_mismatch": 1}
    (warned,) = report["warnedFiles"]
    assert warned["file"] == uri + "c6.wav"
    assert (
        "mostly Cyrillic letters" in warned["detail"]
        and "'en' is written in Latin" in warned["detail"]
    )
    assert "script_mismatch: 1" in printed and "warnings: 1 (kept)" in printed

    # scriptMismatch: skip skips it instead.
    body["dataset"]["scriptMismatch"] = "skip"
    ft = resource_yaml(tmp_path / "skip.yaml", body)
    assert wft("prepare", "-f", str(ft), "--out", str(out), "--quiet", "--workers", "2") == 0
    report = json.loads((out / "report.json").read_text())
    assert report["samples"] == 5 and report["warnings"] == {}
    assert report["skippedReasons"]["script_mismatch"] == 1


def test_a_bad_dataset_is_reported_in_one_pass_by_wft_prepare(
    store: S3Store,
    tiny_model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Bad transcripts, bad audio and a missing eval manifest at once: one run names them all
    (before, BadData named the transcripts, and the audio only after they were fixed)."""
    store.client.create_bucket(Bucket="one-pass")
    uri = "s3://one-pass/set/"
    store.upload_dir(tiny_model_dir, "s3://one-pass/models/tiny/")
    lines = []
    for i in range(2):
        upload_speech(store, tmp_path, uri, f"ok{i}.wav", PHRASES[i], 16000, False, "wav")
        lines.append({"audio_filepath": f"ok{i}.wav", "text": PHRASES[i]})
    lines += [{"audio_filepath": "ok0.wav", "text": "[noise]"}, {"text": "no audio"}]
    store.put_bytes(uri + "broken.wav", b"RIFF not really")
    samples, rate = speech("nan")
    samples[10] = np.nan
    put_float_wav(store, tmp_path, uri, "nan.wav", samples, rate)
    lines += [
        {"audio_filepath": "broken.wav", "text": "broken"},
        {"audio_filepath": "nan.wav", "text": "nan"},
        {"audio_filepath": "gone.wav", "text": "gone"},
    ]
    store.put_bytes(uri + "manifest.jsonl", "\n".join(map(json.dumps, lines)).encode())
    body = prepare_spec("one-pass", uri, manifest="manifest.jsonl", evalManifest="heldout.jsonl")
    ft = resource_yaml(tmp_path / "ft.yaml", body)
    out = tmp_path / "out"

    assert wft("prepare", "-f", str(ft), "--out", str(out), "--quiet", "--workers", "2") == 1
    captured = capsys.readouterr()
    err = captured.err
    assert "BadData: 2 problems with the dataset" in err
    assert "(1) no such object: s3://one-pass/set/heldout.jsonl" in err
    assert "(2) 5 of 7 samples skipped (71%)" in err and "Traceback" not in err
    assert f"report: {out / 'report.json'}" in err
    report = json.loads((out / "report.json").read_text())
    assert report["failure"]["reason"] == "BadData"
    assert report["skippedReasons"] == {
        "empty_transcript": 1,
        "bad_manifest_line": 1,
        "undecodable_audio": 1,
        "non_finite_audio": 1,
        "missing_audio": 1,
    }
    named = {f["file"].removeprefix(uri) for f in report["skippedFiles"]}
    assert named == {"ok0.wav", "manifest.jsonl:4", "broken.wav", "nan.wav", "gone.wav"}
    assert report["samples"] == 2  # what would have been trained on
    assert "skipped: 5 of 7" in captured.out  # the summary is printed on failure too


@pytest.fixture(scope="module")
def kube() -> Iterator[EmbeddedKubernetes]:
    with EmbeddedKubernetes() as server:
        yield server


def test_the_job_on_a_bad_dataset_writes_status_dataset_and_report_json(
    aws_env: str,
    tiny_model_dir: Path,
    tmp_path: Path,
    kube: EmbeddedKubernetes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Job's entry point reporting to the embedded API: BadData, status.dataset with the
    counts, report.json with every skipped file in the run folder (named in the message)."""
    from kubernetes import client
    from wft_api import ResourceRef, TrainerConfig, WhisperFineTuneSpec
    from wft_trainer.__main__ import main

    s3 = boto3.client("s3")
    stage_s3(s3, tmp_path, tiny_model_dir, "bad-job", n_train=4)
    lines = s3.get_object(Bucket="bad-job", Key="data/train.jsonl")["Body"].read().decode()
    lines += "".join(
        json.dumps({"audio_filepath": f"clips/missing{i}.wav", "text": "gone"}) + "\n"
        for i in range(3)
    )
    s3.put_object(Bucket="bad-job", Key="data/train.jsonl", Body=lines.encode())
    client.CoreV1Api(kube.api_client()).create_namespace({"metadata": {"name": "bad-job"}})
    body = spec("bad-job")
    api = client.CustomObjectsApi(kube.api_client())
    api.create_namespaced_custom_object(
        GROUP,
        VERSION,
        "bad-job",
        PLURAL,
        {"apiVersion": "wft.dev/v1alpha1", "kind": "WhisperFineTune",
         "metadata": {"name": "bad", "namespace": "bad-job"}, "spec": body},
    )  # fmt: skip
    config = TrainerConfig(
        resource=ResourceRef(namespace="bad-job", name="bad", generation=1),
        spec=WhisperFineTuneSpec.model_validate(body),
        report_status=True,
    )
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))  # the trainer reads it when it starts
    monkeypatch.setenv("WFT_CONFIG", config.model_dump_json(by_alias=True))
    monkeypatch.setenv("WFT_TERMINATION_LOG", str(tmp_path / "termination-log"))
    monkeypatch.setenv("WFT_WORK_DIR", str(tmp_path / "work"))
    previous = signal.getsignal(signal.SIGTERM)
    try:
        assert main() == 3
    finally:
        signal.signal(signal.SIGTERM, previous)

    run = "out/bad-job/bad/generation-1/"
    told = json.loads((tmp_path / "termination-log").read_text())
    assert told["reason"] == "BadData" and "3 of 11 samples skipped" in told["message"]
    assert f"(every skipped file: s3://bad-job/{run}report.json)" in told["message"]
    status = api.get_namespaced_custom_object_status(GROUP, VERSION, "bad-job", PLURAL, "bad")
    dataset = status["status"]["trainer"]["dataset"]  # the trainer's report
    assert dataset["skipped"] == 3 and dataset["skippedReasons"] == {"missing_audio": 3}
    assert dataset["samples"] == 4
    report = json.loads(s3.get_object(Bucket="bad-job", Key=run + "report.json")["Body"].read())
    assert sorted(f["file"] for f in report["skippedFiles"]) == [
        f"s3://bad-job/data/clips/missing{i}.wav" for i in range(3)
    ]
    assert report["failure"]["reason"] == "BadData"
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="bad-job", Prefix=run)["Contents"]}
    assert keys == {run + "report.json"}  # no adapter, no _SUCCESS
