"""Whisper log-mel features, computed in worker processes (numpy only: no torch to import).

`log_mel` gives the same numbers as `WhisperFeatureExtractor(...)(audio)` (pad to 30 s, STFT,
mel filters, log10, clamp to max - 8, scale) — a unit test holds it to that — but runs the STFT
only over the clip plus one window: the frames past the end of a short clip see nothing but the
zero padding, so their value is known (log10 of the 1e-10 floor) without computing it. A 5 s
clip costs a sixth of a full 30 s window.

`process_clip` is what a worker does for one sample: decode to 16 kHz mono (refusing NaN,
infinite or absurdly loud samples, and a clip too long from its header), check duration and
silence, compute features (finite, or the clip is refused). Workers read the file from the local cache (only a path crosses the
process boundary) and return float16 features.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from .audio import TARGET_RATE, AudioError, decode, is_silence
from .samples import Skip

N_FFT = 400
HOP = 160
N_SAMPLES = 30 * TARGET_RATE  # Whisper's fixed 30 s window
N_FRAMES = N_SAMPLES // HOP  # 3000
_LOG_FLOOR = -10.0  # log10(1e-10), the clamp for an all-zero frame

_worker: dict[str, Any] = {}


@dataclass(frozen=True)
class ClipJob:
    index: int
    path: str
    audio: str  # source URI, for skip messages
    min_seconds: float
    max_seconds: float


def init_worker(mel_filters: np.ndarray) -> None:
    """Process-pool initializer: keep the mel filters (the pool is the parallelism; the matrices
    here are too small for BLAS to use more than one thread). numpy only, no torch: a worker
    starts in a fraction of a second and stays small."""
    _worker["mel"] = np.asarray(mel_filters, dtype=np.float32).T.copy()  # [n_mels, 201]


# torch.hann_window(400) (periodic), as Whisper's extractor uses.
_WINDOW = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)


def log_mel(audio: np.ndarray, mel_filters_t: np.ndarray | None = None) -> np.ndarray:
    """[n_mels, 3000] float32 log-mel of `audio` (16 kHz mono), padded or cut to 30 s."""
    mel = mel_filters_t if mel_filters_t is not None else _worker["mel"]
    audio = np.asarray(audio[:N_SAMPLES], dtype=np.float32)
    n = audio.shape[0]
    # Frames whose window reaches the clip; every later one sees only zero padding.
    valid = min(N_FRAMES, (n + N_FFT // 2) // HOP + 2)
    length = min(N_SAMPLES, valid * HOP + N_FFT)
    padded = np.zeros(length, dtype=np.float32)
    padded[:n] = audio
    # center=True: reflect-pad half a window at both ends, as torch.stft in the extractor does.
    padded = np.pad(padded, N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:valid]
    spectrum = np.fft.rfft(frames * _WINDOW, axis=1)
    power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)  # [valid, 201]
    spec = np.log10(np.maximum(mel @ power.T, 1e-10))
    out = np.full((mel.shape[0], N_FRAMES), _LOG_FLOOR, dtype=np.float32)
    out[:, :valid] = spec
    out = np.maximum(out, out.max() - 8.0)
    scaled: np.ndarray = (out + 4.0) / 4.0
    return scaled


def process_clip(job: ClipJob) -> tuple[int, str, Any, float]:
    """-> (index, "ok", float16 features, seconds) or (index, skip reason, detail, seconds)."""
    try:
        audio = decode(
            job.path, suffix=PurePosixPath(job.audio).suffix, max_seconds=job.max_seconds
        )
    except AudioError as err:
        return job.index, err.reason, str(err), 0.0
    seconds = audio.shape[0] / TARGET_RATE
    if seconds < job.min_seconds:
        return job.index, Skip.TOO_SHORT, f"{seconds:.2f} s < {job.min_seconds} s", seconds
    if seconds > job.max_seconds:
        return job.index, Skip.TOO_LONG, f"{seconds:.2f} s > {job.max_seconds} s", seconds
    if is_silence(audio):
        return job.index, Skip.SILENCE, f"{seconds:.2f} s below -60 dBFS", seconds
    features = log_mel(audio).astype(np.float16)
    if not np.isfinite(features).all():  # finite audio within MAX_PEAK cannot get here
        return job.index, Skip.NON_FINITE_AUDIO, "log-mel features are not finite", seconds
    return job.index, "ok", features, seconds
