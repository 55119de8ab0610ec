"""Our log-mel (STFT over the clip only) against Whisper's own feature extractor."""

from __future__ import annotations

import numpy as np
import pytest
from wft_trainer.data.audio import is_silence, to_16k_mono
from wft_trainer.data.features import init_worker, log_mel


@pytest.mark.parametrize("n_mels", [80, 128])
@pytest.mark.parametrize("seconds", [0.2, 4.37, 29.99, 30.0, 31.0])
def test_log_mel_matches_whisper_feature_extractor(n_mels: int, seconds: float) -> None:
    from transformers import WhisperFeatureExtractor

    extractor = WhisperFeatureExtractor(feature_size=n_mels)
    init_worker(extractor.mel_filters)
    rng = np.random.default_rng(int(seconds * 100))
    audio = (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)
    expected = extractor(audio, sampling_rate=16000, return_tensors="np").input_features[0]
    ours = log_mel(audio)
    assert ours.shape == (n_mels, 3000)
    np.testing.assert_allclose(ours, expected, atol=1e-4)


def test_downmix_and_resample_keep_duration() -> None:
    t = np.arange(44100 * 2) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.zeros_like(t)], axis=1).astype(np.float32)
    mono = to_16k_mono(stereo, 44100)
    assert mono.shape == (32000,)
    assert np.max(np.abs(mono)) == pytest.approx(0.5, abs=0.01)  # the average of both channels
    assert is_silence(np.zeros(16000, np.float32)) and not is_silence(mono)
