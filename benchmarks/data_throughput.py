"""Data-stage throughput and memory: seconds of audio per second per CPU core, and peak RSS.

    .venv/bin/python benchmarks/data_throughput.py [--minutes 10] [--scale 4] [--workers N]

Generates (once; cached under $WFT_BENCH_CACHE, default ~/.cache/wft/bench) a corpus of real
espeak-ng speech in mixed formats (WAV, FLAC, MP3, OGG; 8-48 kHz; mono and stereo), uploads it
to moto's S3 server on loopback, and runs the real `prepare` on it, in a fresh subprocess per
corpus size so that each peak RSS is measured on its own: the base corpus, and one `--scale`
times larger. Each run uses an empty download cache, so downloads are part of the time.

Printed per corpus: audio hours, wall seconds of the audio stage (download + decode + resample
+ features + write), real-time factor per core (audio seconds / (wall seconds x workers)), the
same per CPU-second actually used by the workers, and peak RSS of the main process and of the
largest worker. The goal (issue 4): >= 100x real time per core, and peak memory that does not
grow with the corpus.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PHRASES = [
    "the quick brown fox jumps over the lazy dog near the river bank",
    "please call stella and ask her to bring these things with her from the store",
    "six spoons of fresh snow peas five thick slabs of blue cheese and maybe a snack",
    "we also need a small plastic snake and a big toy frog for the kids",
    "she can scoop these things into three red bags and we will go meet her",
    "the weather today is cloudy with a chance of rain in the late afternoon",
    "turn left at the second traffic light and the station is on your right",
    "speech recognition systems learn from thousands of hours of transcribed audio",
    "our meeting has been moved to thursday at half past ten in the main room",
    "the train to the airport leaves every fifteen minutes from platform four",
    "remember to save your work before you close the laptop for the night",
    "a good cup of coffee in the morning makes the whole day a little better",
]
# Container, rate, stereo: cycled over the clips so every corpus mixes them evenly.
VARIANTS = [
    ("wav", 16000, False),
    ("flac", 22050, True),
    ("mp3", 44100, False),
    ("ogg", 48000, True),
    ("wav", 8000, False),
    ("flac", 48000, False),
    ("mp3", 22050, True),
    ("ogg", 16000, False),
]


def cache_root() -> Path:
    base = os.environ.get("WFT_BENCH_CACHE")
    return Path(base) if base else Path.home() / ".cache" / "wft" / "bench"


def build_corpus(seconds: float) -> tuple[Path, float]:
    """A folder of clips (+ manifest.jsonl) holding at least `seconds` of speech; cached."""
    from wft_local.speech import synthesize, write_audio

    folder = cache_root() / f"corpus-{int(seconds)}s"
    done = folder / "manifest.jsonl"
    if done.exists():
        total = sum(json.loads(line)["duration"] for line in done.read_text().splitlines())
        return folder, total
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    voices = [synthesize(p, speed=150) for p in PHRASES]  # synthesize once, then convert
    lines, total, i = [], 0.0, 0
    while total < seconds:
        samples, rate = voices[i % len(voices)]
        ext, target, stereo = VARIANTS[i % len(VARIANTS)]
        name = f"clips/{i:05d}.{ext}"
        (tmp / "clips").mkdir(exist_ok=True)
        write_audio(tmp / name, samples, rate, target_rate_hz=target, stereo=stereo)
        duration = len(samples) / rate
        lines.append(
            json.dumps(
                {"audio_filepath": name, "text": PHRASES[i % len(PHRASES)], "duration": duration}
            )
        )
        total += duration
        i += 1
    (tmp / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder, total


def _status_kb(pid: int | str, field: str) -> int:
    """VmHWM/VmRSS from /proc: per address space, unlike ru_maxrss, which also counts what the
    parent had mapped when it forked this process (before exec)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class WorkerMemory:
    """Polls the RSS of this process's children (the feature workers) while prepare runs."""

    def __init__(self) -> None:
        import threading

        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        me = str(os.getpid())
        while not self._stop.wait(0.05):
            for stat in Path("/proc").glob("[0-9]*/stat"):
                try:
                    fields = stat.read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if fields[1] == me:  # ppid
                    pid = stat.parent.name
                    self.peak_kb = max(self.peak_kb, _status_kb(pid, "VmHWM"))

    def __enter__(self) -> WorkerMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def child(endpoint: str, uri: str, workers: int) -> None:
    """One prepare run in this process; prints a JSON line with the figures."""
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    from wft_api.v1alpha1 import TrainerConfig
    from wft_local.tiny_whisper import build_processor
    from wft_trainer.data import prepare
    from wft_trainer.storage import S3Store

    processor = build_processor(80)
    processor.tokenizer.set_prefix_tokens(
        language="en", task="transcribe", predict_timestamps=False
    )
    config = TrainerConfig.model_validate(
        {
            "resource": {"name": "bench"},
            "spec": {
                "dataset": {"uri": uri, "evalFraction": 0.05, "maxSkippedFraction": 0.0},
                "output": {"uri": "s3://bench-out/"},
            },
        }
    )
    with tempfile.TemporaryDirectory(prefix="wft-bench-") as tmp:
        store = S3Store.from_spec(cache_dir=Path(tmp) / "cache")
        before = resource.getrusage(resource.RUSAGE_SELF)
        t = time.monotonic()
        with WorkerMemory() as worker_memory:
            data = prepare(config, processor, Path(tmp) / "work", store, workers=workers)
        wall = time.monotonic() - t
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = data.report
    print(
        json.dumps(
            {
                "clips": r.samples + r.eval_samples,
                "audio_seconds": (r.hours + r.eval_hours) * 3600,
                "audio_stage_s": r.timings["audio"],
                "total_s": wall,
                "workers": workers,
                "worker_cpu_s": kids.ru_utime + kids.ru_stime,
                # The main process's CPU during prepare only (not imports or the processor).
                "main_cpu_s": me.ru_utime + me.ru_stime - before.ru_utime - before.ru_stime,
                "peak_rss_main_mb": _status_kb("self", "VmHWM") / 1024,
                "peak_rss_worker_mb": worker_memory.peak_kb / 1024,
                "downloaded_mb": r.downloaded_bytes / 1e6,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="base corpus length")
    parser.add_argument("--scale", type=int, default=4, help="the larger corpus, in base corpora")
    parser.add_argument("--workers", type=int, default=0, help="feature processes (0: all CPUs)")
    parser.add_argument("--child", nargs=2, metavar=("ENDPOINT", "URI"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    from wft_trainer.data.pipeline import cpu_count

    workers = args.workers or cpu_count()
    if args.child:
        child(args.child[0], args.child[1], workers)
        return

    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import free_port

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    s3 = boto3.client("s3", endpoint_url=endpoint)
    s3.create_bucket(Bucket="bench")
    print(f"workers: {workers}  (CPUs: {os.cpu_count()})")
    try:
        for scale in (1, args.scale):
            folder, _ = build_corpus(args.minutes * 60 * scale)
            prefix = f"corpus-x{scale}/"
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    s3.upload_file(str(path), "bench", prefix + path.relative_to(folder).as_posix())
            cmd = [sys.executable, __file__, "--workers", str(workers), "--child", endpoint,
                   f"s3://bench/{prefix}"]  # fmt: skip
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                sys.exit(f"benchmark run failed:\n{out.stderr[-3000:]}")
            r = json.loads(out.stdout.strip().splitlines()[-1])
            rtf_core = r["audio_seconds"] / (r["audio_stage_s"] * r["workers"])
            rtf_cpu = r["audio_seconds"] / max(r["worker_cpu_s"] + r["main_cpu_s"], 1e-9)
            rtf_total = r["audio_seconds"] / (r["total_s"] * r["workers"])
            print(
                f"corpus x{scale}: {r['clips']} clips, {r['audio_seconds'] / 60:.1f} min of audio, "
                f"{r['downloaded_mb']:.0f} MB downloaded\n"
                f"  audio stage {r['audio_stage_s']:.1f} s wall on {r['workers']} workers: "
                f"{rtf_core:.0f}x real time per core (wall), {rtf_cpu:.0f}x per CPU-second used\n"
                f"  whole prepare {r['total_s']:.1f} s wall (listing, manifest, worker start, "
                f"audio): {rtf_total:.0f}x real time per core\n"
                f"  peak RSS: main {r['peak_rss_main_mb']:.0f} MB, "
                f"largest worker {r['peak_rss_worker_mb']:.0f} MB"
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
