"""The small checks behind the data report and the status: scripts per language, NaN and loud
samples, and JSON without NaN."""

from __future__ import annotations

import json

import numpy as np
import pytest
from wft_api.languages import LANGUAGES
from wft_trainer.data.audio import AudioError, check_samples
from wft_trainer.data.samples import Skip
from wft_trainer.data.scripts import SCRIPTS, mismatch
from wft_trainer.status import finite_json, metrics_body


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("hello world", "en"),
        ("the patient saw Dr. Иванов today", "en"),  # a name in another script
        ("Grüße aus Köln, 2024!", "de"),
        ("привет мир", "ru"),
        ("zdravo svete", "sr"),  # Serbian: Latin or Cyrillic
        ("здраво свете", "sr"),
        ("こんにちは世界", "ja"),
        ("ラーメン", "ja"),
        ("OKです", "ja"),
        ("你好世界", "zh"),
        ("안녕하세요", "ko"),
        ("שלום", "he"),
        ("नमस्ते", "hi"),
        ("123 456 !!", "en"),  # no letters: nothing to judge
    ],
)
def test_transcripts_in_the_languages_script_pass(text: str, language: str) -> None:
    assert mismatch(text, language) is None


@pytest.mark.parametrize(
    ("text", "language", "task", "said"),
    [
        ("привет мир", "en", "transcribe", "mostly Cyrillic letters (9 of 9), but language 'en' is written in Latin"),
        ("hello world", "ja", "transcribe", "is written in Han or Hiragana or Katakana"),
        ("hello world", "ru", "transcribe", "language 'ru' is written in Cyrillic"),
        ("こんにちは", "en", "transcribe", "mostly Hiragana letters"),
        ("привет", "ru", "translate", "task translate makes English labels, written in Latin"),
    ],
)  # fmt: skip
def test_transcripts_in_another_script_say_which(
    text: str, language: str, task: str, said: str
) -> None:
    why = mismatch(text, language, task)
    assert why is not None and said in why


def test_every_scripted_language_is_a_whisper_language() -> None:
    assert set(SCRIPTS) <= set(LANGUAGES)


def test_nan_infinite_and_absurd_samples_are_refused_with_their_reason() -> None:
    good = (0.5 * np.sin(np.arange(16000) / 10)).astype(np.float32)
    check_samples(good, 16000)
    check_samples(good * 3, 16000)  # a hot float master: fine
    for bad, reason in [
        (np.where(np.arange(16000) == 8000, np.nan, good), Skip.NON_FINITE_AUDIO),
        (
            np.stack([good, np.where(np.arange(16000) == 3, np.inf, good)], axis=1),
            Skip.NON_FINITE_AUDIO,
        ),
        (good * 1e30, Skip.AMPLITUDE_OUT_OF_RANGE),
        (good * 32767, Skip.AMPLITUDE_OUT_OF_RANGE),
    ]:
        with pytest.raises(AudioError) as err:
            check_samples(bad.astype(np.float32), 16000)
        assert err.value.reason == reason


def test_status_json_never_carries_nan() -> None:
    body = {
        "metrics": {"trainLoss": float("nan"), "wer": 0.25, "evalLoss": float("inf")},
        "curve": [[1, float("nan")], [2, 1.5]],
        "deleteMe": None,
    }
    clean = finite_json(body)
    assert clean == {"metrics": {"wer": 0.25}, "curve": [[1, None], [2, 1.5]], "deleteMe": None}
    json.dumps(clean, allow_nan=False)
    # A NaN WER would fail the Metrics model's bound (ge=0): it is left out instead.
    assert metrics_body(wer=float("nan"), eval_loss=float("-inf"), baseline_wer=0.3) == {
        "metrics": {"baselineWer": 0.3}
    }
