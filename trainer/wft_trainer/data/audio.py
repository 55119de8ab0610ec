"""Any audio file -> 16 kHz mono float32: the seed's most important step.

Nothing reaches the model at another rate: every clip is decoded (soundfile: WAV, FLAC, OGG
Vorbis, Opus, MP3; the `ffmpeg` binary only for containers libsndfile cannot read, such as
m4a/AAC), downmixed to mono by averaging the channels, and resampled with soxr (high quality).

A file that only partly decodes is rejected rather than trained on: its transcript describes
audio we no longer have. libsndfile silently shortens a truncated WAV (and stops early in a
truncated MP3), so the declared length is checked against what was read.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np

TARGET_RATE = 16000
FFMPEG_EXTENSIONS = (".m4a", ".aac", ".mp4", ".webm", ".wma")
# RMS below this (about -60 dBFS) is silence: no speech to learn from.
SILENCE_RMS = 1e-3
# A declared length this much longer than what decoded means the file was cut off.
TRUNCATION_TOLERANCE = 0.05
_STREAMED_WAV_SIZE = 0x7FFF0000  # writers that stream (espeak-ng --stdout) leave sizes huge


class AudioError(Exception):
    """The file is not usable audio; the message says why (for the report)."""


def decode(path: Path | str, suffix: str | None = None) -> np.ndarray:
    """Decode, downmix and resample to 16 kHz mono float32 in [-1, 1].

    `suffix` is the source's extension when `path` has none (cache files are named by digest).
    """
    path = Path(path)
    suffix = (suffix if suffix is not None else path.suffix).lower()
    if path.stat().st_size == 0:
        raise AudioError("empty file (0 bytes)")
    if suffix in FFMPEG_EXTENSIONS:
        return _decode_ffmpeg(path)
    samples, rate = _decode_soundfile(path)
    return to_16k_mono(samples, rate)


def to_16k_mono(samples: np.ndarray, rate: int) -> np.ndarray:
    import soxr

    if samples.ndim == 2:
        samples = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    if rate != TARGET_RATE:
        samples = soxr.resample(samples, rate, TARGET_RATE, quality="HQ").astype(np.float32)
    return samples


def is_silence(samples: np.ndarray) -> bool:
    if samples.size == 0:
        return True
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) < SILENCE_RMS


def _decode_soundfile(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        with sf.SoundFile(path) as f:
            declared = f.frames
            rate = f.samplerate
            container = f.format
            samples = f.read(dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        # libsndfile's message names our cache file; keep only the part after it.
        message = _first_line(err).replace(f"'{path}'", "file").replace(str(path), "file")
        raise AudioError(f"cannot decode: {message}") from None
    if samples.shape[0] == 0:
        raise AudioError("no audio frames")
    if container in ("WAV", "WAVEX", "RF64"):
        _check_wav_length(path)
    elif declared > 0 and samples.shape[0] < declared * (1 - TRUNCATION_TOLERANCE):
        raise AudioError(
            f"truncated: header declares {declared} frames, only {samples.shape[0]} decode"
        )
    return samples, rate


def _check_wav_length(path: Path) -> None:
    """The RIFF header's data size against the bytes present."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64"):
            return
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return
            cid, length = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"data":
                if length >= _STREAMED_WAV_SIZE or head[:4] == b"RF64":
                    return
                present = size - f.tell()
                if present < length * (1 - TRUNCATION_TOLERANCE):
                    raise AudioError(
                        f"truncated: header declares {length} bytes of samples, file holds "
                        f"{present}"
                    )
                return
            f.seek(length + (length & 1), 1)


def _decode_ffmpeg(path: Path) -> np.ndarray:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise AudioError(f"{path.suffix} needs ffmpeg, which is not installed in this image")
    cmd = [
        ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(path),
        "-vn", "-f", "f32le", "-ac", "1", "-ar", str(TARGET_RATE),
        # soxr in ffmpeg too, so m4a gets the same resampler as everything else.
        "-af", "aresample=resampler=soxr", "pipe:1",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, check=False, timeout=600)
    if proc.returncode != 0:
        raise AudioError(
            f"ffmpeg cannot decode: {_first_line(proc.stderr.decode(errors='replace'))}"
        )
    samples = np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32)
    if samples.size == 0:
        raise AudioError("no audio frames")
    return samples


def _first_line(err: object) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__
