"""Any audio file -> 16 kHz mono float32: the seed's most important step.

Nothing reaches the model at another rate: every clip is decoded (soundfile: WAV, FLAC, OGG
Vorbis, Opus, MP3; the `ffmpeg` binary only for containers libsndfile cannot read, such as
m4a/AAC), downmixed to mono by averaging the channels, and resampled with soxr (high quality).

A file that only partly decodes is rejected rather than trained on: its transcript describes
audio we no longer have. libsndfile silently shortens a truncated WAV (and stops early in a
truncated MP3), so the declared length is checked against what was read.

A clip longer than the limit is refused from its header (libsndfile's frame count, which for WAV
and FLAC is exact) before a sample is decoded, and decoding never reads more than the limit plus
a second whatever the header says (a streamed WAV declares no length; ffmpeg gets `-t`): a
10-minute WAV costs a header read, not its whole length in memory.

Float files can hold what no recording does: NaN or infinite samples, or amplitudes far beyond
full scale (1.0), such as int16 values written as float. Either would make the log-mel features,
then the loss, then every adapter weight NaN; such a file is refused under its own reason.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np

from .samples import Skip

TARGET_RATE = 16000
FFMPEG_EXTENSIONS = (".m4a", ".aac", ".mp4", ".webm", ".wma")
# RMS below this (about -60 dBFS) is silence: no speech to learn from.
SILENCE_RMS = 1e-3
# A declared length this much longer than what decoded means the file was cut off.
TRUNCATION_TOLERANCE = 0.05
_STREAMED_WAV_SIZE = 0x7FFF0000  # writers that stream (espeak-ng --stdout) leave sizes huge
# Float samples beyond this (about +30 dBFS over full scale) are not a recording: int16 values
# stored as float, or garbage. Hot float masters peak at 1.5 or 2, far below it.
MAX_PEAK = 32.0
# Decoding stops this far past the duration limit; the exact length check is the caller's.
DECODE_MARGIN_SECONDS = 1.0


class AudioError(Exception):
    """The file is not usable audio; the message says why (for the report), `reason` under
    which skip reason it counts (samples.Skip)."""

    def __init__(self, message: str, reason: str = Skip.UNDECODABLE_AUDIO) -> None:
        super().__init__(message)
        self.reason = reason


def decode(
    path: Path | str, suffix: str | None = None, max_seconds: float | None = None
) -> np.ndarray:
    """Decode, downmix and resample to 16 kHz mono float32.

    `suffix` is the source's extension when `path` has none (cache files are named by digest).
    With `max_seconds`, a longer clip raises AudioError (reason too_long) from its header or
    after at most `max_seconds` + 1 s of decoding, never after decoding all of it.
    """
    path = Path(path)
    suffix = (suffix if suffix is not None else path.suffix).lower()
    if path.stat().st_size == 0:
        raise AudioError("empty file (0 bytes)")
    if suffix in FFMPEG_EXTENSIONS:
        samples = _decode_ffmpeg(path, max_seconds)
        check_samples(samples, TARGET_RATE)
        return samples
    samples, rate = _decode_soundfile(path, max_seconds)
    check_samples(samples, rate)
    return to_16k_mono(samples, rate)


def check_samples(samples: np.ndarray, rate: int) -> None:
    """Refuse NaN or infinite samples, and amplitudes no recording has (see MAX_PEAK)."""
    finite = np.isfinite(samples)
    if not finite.all():
        bad = np.flatnonzero(~finite.all(axis=1) if samples.ndim == 2 else ~finite)
        raise AudioError(
            f"{bad.size} of {samples.shape[0]} samples are NaN or infinite (the first at "
            f"{bad[0] / rate:.2f} s)",
            Skip.NON_FINITE_AUDIO,
        )
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    if peak > MAX_PEAK:
        raise AudioError(
            f"peak amplitude {peak:.3g}, more than {MAX_PEAK:g} times full scale (1.0): float "
            "samples not scaled to [-1, 1] (int16 values written as float?)",
            Skip.AMPLITUDE_OUT_OF_RANGE,
        )


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


def too_long(seconds: float, max_seconds: float, how: str, at_least: bool = False) -> AudioError:
    length = f"{'at least ' if at_least else ''}{seconds:.2f} s"
    return AudioError(f"{length} > {max_seconds:g} s ({how})", Skip.TOO_LONG)


def _decode_soundfile(path: Path, max_seconds: float | None) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        with sf.SoundFile(path) as f:
            declared = f.frames
            rate = f.samplerate
            container = f.format
            if container in ("WAV", "WAVEX", "RF64"):
                _check_wav_length(path)  # before the length: a cut-off file is not a long one
            limit = -1
            if max_seconds is not None:
                if 0 < declared < 2**62 and declared / rate > max_seconds + DECODE_MARGIN_SECONDS:
                    raise too_long(declared / rate, max_seconds, "from the header, not decoded")
                limit = int((max_seconds + DECODE_MARGIN_SECONDS) * rate) + 1
            samples = f.read(frames=limit, dtype="float32", always_2d=True)
            if limit > 0 and samples.shape[0] >= limit:
                # The header said less (or nothing, as a streamed WAV does): stop here.
                seconds = samples.shape[0] / rate
                raise too_long(seconds, max_seconds or 0.0, "stopped decoding", at_least=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        # libsndfile's message names our cache file; keep only the part after it.
        message = _first_line(err).replace(f"'{path}'", "file").replace(str(path), "file")
        raise AudioError(f"cannot decode: {message}") from None
    if samples.shape[0] == 0:
        raise AudioError("no audio frames")
    if container not in ("WAV", "WAVEX", "RF64") and (
        declared > 0 and samples.shape[0] < declared * (1 - TRUNCATION_TOLERANCE)
    ):
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


def ffmpeg_binary(needed_for: str = "m4a/AAC") -> str:
    """ffmpeg from PATH (the trainer image installs Debian's), else the static build of the
    imageio-ffmpeg wheel where that is installed (the laptop stand-in depends on it, so that a
    machine without system packages decodes m4a too)."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError):
        raise AudioError(
            f"{needed_for} needs ffmpeg, which is not installed (the trainer image has it; "
            "elsewhere put ffmpeg on PATH or `pip install imageio-ffmpeg`)"
        ) from None


def _decode_ffmpeg(path: Path, max_seconds: float | None = None) -> np.ndarray:
    ffmpeg = ffmpeg_binary(needed_for=path.suffix or "this container")
    cmd = [
        ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(path),
        "-vn", "-f", "f32le", "-ac", "1", "-ar", str(TARGET_RATE),
        # soxr in ffmpeg too, so m4a gets the same resampler as everything else.
        "-af", "aresample=resampler=soxr",
    ]  # fmt: skip
    if max_seconds is not None:
        cmd += ["-t", f"{max_seconds + DECODE_MARGIN_SECONDS:.3f}"]  # never decode it all
    cmd.append("pipe:1")
    proc = subprocess.run(cmd, capture_output=True, check=False, timeout=600)
    if proc.returncode != 0:
        raise AudioError(
            f"ffmpeg cannot decode: {_first_line(proc.stderr.decode(errors='replace'))}"
        )
    samples = np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32)
    if samples.size == 0:
        raise AudioError("no audio frames")
    if (
        max_seconds is not None
        and samples.size / TARGET_RATE >= max_seconds + DECODE_MARGIN_SECONDS
    ):
        raise too_long(samples.size / TARGET_RATE, max_seconds, "stopped decoding", at_least=True)
    return samples


def _first_line(err: object) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__
