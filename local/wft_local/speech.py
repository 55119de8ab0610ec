"""Real speech for tests and the demo: espeak-ng's synthesizer (no model, no download).

`synthesize()` returns float32 mono samples; `write_audio()` stores them as WAV, FLAC, MP3, OGG
(Vorbis) or Opus through soundfile, optionally as stereo and at another sample rate (soxr), so
that tests can exercise every decoder and resampling path with real speech rather than tones.
m4a is written through ffmpeg (soundfile cannot write AAC).

Both come from PyPI, as dependencies of this distribution, so a machine needs no system
packages: libespeak-ng and its voices from the espeakng-loader wheel, called through ctypes by
`espeak_worker.py`, and ffmpeg from PATH or else imageio-ffmpeg's static build (the lookup of
`wft_trainer.data.audio`, which the trainer decodes with).
"""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
from wft_trainer.data.audio import AudioError, ffmpeg_binary

# Extension -> (soundfile format, subtype). MP3 and Opus need libsndfile >= 1.1 (the wheel has it).
_FORMATS: dict[str, tuple[str, str | None]] = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
    "ogg": ("OGG", "VORBIS"),
    "opus": ("OGG", "OPUS"),
}
# Rates the lossy encoders accept; anything else is resampled to the nearest one above it.
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
_MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)


class SpeechError(RuntimeError):
    """The speech engine (or ffmpeg) is missing or failed."""


# One process per utterance (the worker's docstring says why); rate of its 16-bit output.
_WORKER = Path(__file__).with_name("espeak_worker.py")
ESPEAK_RATE_HZ = 22050


@functools.cache
def speech_engine() -> tuple[str, str]:
    """(libespeak-ng's path, its voice data folder) from the espeakng-loader wheel; raises
    SpeechError with what to install when it is missing."""
    try:
        import espeakng_loader
    except ImportError:
        raise SpeechError(
            "the speech engine is missing: the espeakng-loader package (libespeak-ng and its "
            "voices) is a dependency of whisper-finetune-local; run `make install`"
        ) from None
    try:
        return espeakng_loader.get_library_path(), espeakng_loader.get_data_path()
    except RuntimeError as err:  # the wheel's voices are missing
        raise SpeechError(
            f"the speech engine is incomplete ({err}); reinstall espeakng-loader"
        ) from None


def synthesize(
    text: str, voice: str = "en-us", speed: int = 160, rate_hz: int | None = None
) -> tuple[np.ndarray, int]:
    """Speak `text` with espeak-ng; return (float32 mono samples in [-1, 1], sample rate).

    `voice` and `speed` (words per minute) are the espeak-ng command's -v and -s. `rate_hz`
    resamples from espeak-ng's 22050 Hz with soxr; None keeps the native rate.
    """
    if not text.strip():
        raise ValueError("synthesize: text is empty")
    library, data = speech_engine()
    # -I -S: the worker needs the standard library alone, so it starts in milliseconds.
    worker_args = [library, data, voice, str(speed), str(ESPEAK_RATE_HZ)]
    cmd = [sys.executable, "-I", "-S", str(_WORKER), *worker_args]
    try:
        proc = subprocess.run(
            cmd, input=text.encode(), capture_output=True, check=False, timeout=120
        )
    except subprocess.TimeoutExpired:
        raise SpeechError(f"espeak-ng took over 120 s to speak {text[:60]!r}") from None
    if proc.returncode != 0:
        message = proc.stderr.decode(errors="replace").strip()
        raise SpeechError(message or f"espeak-ng failed (exit {proc.returncode})")
    samples = np.frombuffer(proc.stdout, dtype="<i2").astype(np.float32) / 32768.0
    rate = ESPEAK_RATE_HZ
    if rate_hz is not None and rate_hz != rate:
        samples, rate = resample(samples, rate, rate_hz), rate_hz
    return np.ascontiguousarray(samples, dtype=np.float32), int(rate)


def resample(samples: np.ndarray, rate_hz: int, target_hz: int) -> np.ndarray:
    """soxr's high-quality resampler (works on mono [n] and multi-channel [n, channels])."""
    import soxr

    if rate_hz == target_hz:
        return samples
    return np.asarray(soxr.resample(samples, rate_hz, target_hz, quality="HQ"), dtype=np.float32)


def to_stereo(samples: np.ndarray, delay_samples: int = 0) -> np.ndarray:
    """Two channels [n, 2]: the right one delayed and quieter, so a downmix is not a no-op."""
    right = np.roll(samples, delay_samples) * 0.5 if delay_samples else samples * 0.5
    return np.stack([samples, right.astype(np.float32)], axis=1)


def silence(seconds: float, rate_hz: int = 16000) -> np.ndarray:
    return np.zeros(round(seconds * rate_hz), dtype=np.float32)


def _nearest_allowed(rate_hz: int, allowed: tuple[int, ...]) -> int:
    return next((r for r in allowed if r >= rate_hz), allowed[-1])


def write_audio(
    path: Path | str,
    samples: np.ndarray,
    rate_hz: int,
    *,
    target_rate_hz: int | None = None,
    stereo: bool = False,
) -> Path:
    """Write samples to `path`; the container follows the extension (wav/flac/mp3/ogg/opus/m4a).

    `target_rate_hz` resamples first; `stereo` duplicates into two (different) channels.
    Returns the path. The rate actually written is what the decoder will see: lossy
    encoders only take some rates (Opus: 8-48 kHz steps), so an unsupported rate is raised to
    the next one they accept.
    """
    path = Path(path)
    ext = path.suffix.lower().lstrip(".")
    data = samples.astype(np.float32)
    rate = rate_hz
    if target_rate_hz is not None:
        data, rate = resample(data, rate_hz, target_rate_hz), target_rate_hz
    if ext == "opus" and rate not in _OPUS_RATES:
        new = _nearest_allowed(rate, _OPUS_RATES)
        data, rate = resample(data, rate, new), new
    if ext == "mp3" and rate not in _MP3_RATES:
        new = _nearest_allowed(rate, _MP3_RATES)
        data, rate = resample(data, rate, new), new
    if stereo:
        data = to_stereo(data, delay_samples=max(1, rate // 1000))
    # Lossy encoders clip hard above full scale; keep a little headroom.
    peak = float(np.max(np.abs(data))) if data.size else 0.0
    if peak > 0.99:
        data = data * (0.99 / peak)
    path.parent.mkdir(parents=True, exist_ok=True)
    if ext == "m4a":
        _write_m4a(path, data, rate)
        return path
    if ext not in _FORMATS:
        raise ValueError(
            f"write_audio: unsupported extension .{ext}; use one of wav, flac, mp3, ogg, opus, m4a"
        )
    fmt, subtype = _FORMATS[ext]
    sf.write(path, data, rate, format=fmt, subtype=subtype)
    return path


def _write_m4a(path: Path, data: np.ndarray, rate: int) -> None:
    try:
        ffmpeg = ffmpeg_binary()
    except AudioError as err:
        raise SpeechError(str(err)) from None
    channels = 1 if data.ndim == 1 else data.shape[1]
    cmd = [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
        "-f", "f32le", "-ar", str(rate), "-ac", str(channels), "-i", "pipe:0",
        "-c:a", "aac", "-b:a", "64k", str(path),
    ]  # fmt: skip
    proc = subprocess.run(cmd, input=data.astype("<f4").tobytes(), capture_output=True, check=False)
    if proc.returncode != 0:
        raise SpeechError(f"ffmpeg failed ({proc.returncode}): {proc.stderr.decode()[-500:]}")


def speech_file(
    path: Path | str,
    text: str,
    *,
    rate_hz: int = 16000,
    stereo: bool = False,
    voice: str = "en-us",
    speed: int = 160,
) -> tuple[Path, float]:
    """Synthesize `text` and write it to `path` at `rate_hz`; return (path, duration seconds)."""
    samples, rate = synthesize(text, voice=voice, speed=speed)
    written = write_audio(path, samples, rate, target_rate_hz=rate_hz, stereo=stereo)
    return written, len(samples) / rate
