"""The stand-in's speech: libespeak-ng from the espeakng-loader wheel, one process per utterance.

No system package is involved, so these run on any machine `make install` set up.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from wft_local.speech import SpeechError, synthesize

TEXT = "Patient reports presyncope while taking apixaban."


def test_speech_is_espeak_ngs_native_rate_and_as_long_as_the_sentence() -> None:
    samples, rate = synthesize(TEXT, speed=160)
    assert rate == 22050 and samples.dtype == np.float32
    assert 2.0 < samples.size / rate < 5.0  # seven words at 160 words a minute
    assert 0.1 < float(np.abs(samples).max()) <= 1.0
    # Slower speech is longer: the speed reaches the synthesizer.
    slow, _ = synthesize(TEXT, speed=100)
    assert slow.size > samples.size * 1.3


def test_voices_and_variants_are_resolved_as_the_espeak_ng_command_does() -> None:
    by_voice = {
        voice: synthesize(TEXT, voice=voice, speed=150)[0]
        # a language (en-gb), a voice file with a variant, a language with a variant
        for voice in ("en-us", "en-gb", "en-gb-x-rp+f2", "en-gb+m3")
    }
    for a in by_voice:
        for b in by_voice:
            if a < b:
                same = by_voice[a].size == by_voice[b].size and np.array_equal(
                    by_voice[a], by_voice[b]
                )
                assert not same, f"{a} and {b} spoke identically"
    # The same voice twice is the same audio: the demo's data is reproducible.
    assert np.array_equal(by_voice["en-gb+m3"], synthesize(TEXT, voice="en-gb+m3", speed=150)[0])


def test_an_unknown_voice_or_variant_is_named() -> None:
    with pytest.raises(SpeechError, match="no voice 'xx-nowhere'"):
        synthesize(TEXT, voice="xx-nowhere")
    with pytest.raises(SpeechError, match="no voice variant 'nosuch'"):
        synthesize(TEXT, voice="en-gb+nosuch")
    with pytest.raises(ValueError, match="empty"):
        synthesize("   ")


def test_a_clip_depends_on_its_text_voice_and_speed_alone() -> None:
    """The library carries state from one utterance to the next; the demo's data must not
    depend on what was spoken before a clip, or on which thread spoke it."""
    texts = [f"{TEXT} Number {i}." for i in range(6)]
    voices = ["en-us", "en-gb+m3", "en-gb-x-rp+f2"] * 2
    alone = [synthesize(t, voice=v)[0] for t, v in zip(texts, voices, strict=True)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        pairs = list(zip(texts[::-1], voices[::-1], strict=True))
        together = list(pool.map(lambda tv: synthesize(tv[0], voice=tv[1])[0], pairs))[::-1]
    for a, b in zip(alone, together, strict=True):
        assert np.array_equal(a, b)
