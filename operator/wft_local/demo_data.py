"""The demo's inputs: a small synthetic speech dataset and a tiny Whisper base model, in S3.

Speech comes from espeak-ng (`wft_local.speech`; `apt-get install espeak-ng`), in
several voices and speeds, reading sentences full of domain terms (cardiology and a call
centre) that a general model gets wrong. Clips are 22.05 kHz WAV, every fifth one FLAC,
listed in a NeMo JSONL manifest (`audio_filepath` relative to the prefix, `text`, `duration`). The base model is a randomly initialised tiny Whisper with the real tokenizer
(`wft_trainer.tiny_whisper`): no weights can be downloaded here, so its WER starts near 100%.
"""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .speech import espeak_binary, synthesize, write_audio

SENTENCES = [
    "The echocardiogram shows mild mitral regurgitation.",
    "Start the patient on metoprolol twenty five milligrams twice daily.",
    "Atrial fibrillation with rapid ventricular response.",
    "The troponin level was elevated on admission.",
    "Schedule a transesophageal echocardiogram for Thursday.",
    "Ejection fraction is estimated at forty percent.",
    "No evidence of pericardial effusion.",
    "Continue apixaban and recheck the creatinine clearance.",
    "The stress test was negative for ischemia.",
    "Left bundle branch block is new compared to the prior tracing.",
    "Cardiac catheterization showed a ninety percent stenosis of the left anterior descending artery.",
    "The patient reports palpitations and exertional dyspnea.",
    "Thank you for calling, how can I help you today?",
    "Can I have your account number, please?",
    "I have escalated your ticket to the billing department.",
    "Your refund will be processed within five business days.",
    "Please hold while I transfer you to a supervisor.",
    "I can see two outstanding invoices on your account.",
    "Let me verify your date of birth and postcode.",
    "The router firmware update should fix the connection drops.",
    "Your subscription renews on the first of every month.",
    "I have applied a courtesy credit of ten dollars.",
    "Is there anything else I can help you with today?",
    "Please confirm the last four digits of your card.",
]
VOICES = ["en-us", "en-gb", "en+f3", "en+m3", "en-us+f2", "en-gb+m4"]
SPEEDS = [140, 160, 180]


def make_dataset(out_dir: Path, samples: int, seed: int = 0) -> list[dict[str, Any]]:
    """Synthesise `samples` clips under out_dir/audio and write out_dir/manifest.jsonl."""
    rng = random.Random(seed)
    plan = [
        (
            SENTENCES[i % len(SENTENCES)],
            VOICES[rng.randrange(len(VOICES))],
            SPEEDS[rng.randrange(len(SPEEDS))],
            # A few FLAC files: the trainer decodes more than WAV.
            out_dir / "audio" / f"clip-{i:04d}.{'flac' if i % 5 == 4 else 'wav'}",
        )
        for i in range(samples)
    ]

    def make(item: tuple[str, str, int, Path]) -> dict[str, Any]:
        text, voice, speed, path = item
        audio, rate = synthesize(text, voice=voice, speed=speed)
        write_audio(path, audio, rate)
        rel = path.relative_to(out_dir).as_posix()
        return {"audio_filepath": rel, "text": text, "duration": round(len(audio) / rate, 3)}

    espeak_binary()  # fail once, with the install hint, rather than once per clip
    with ThreadPoolExecutor(max_workers=2) as pool:  # espeak-ng is single-threaded
        entries = list(pool.map(make, plan))
    (out_dir / "manifest.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    return entries


def upload_dir(s3: Any, local: Path, bucket: str, prefix: str) -> int:
    """Upload every file under `local` to s3://bucket/prefix/...; return the count."""
    count = 0
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        key = f"{prefix.rstrip('/')}/{path.relative_to(local).as_posix()}"
        s3.upload_file(str(path), bucket, key)
        count += 1
    return count


def ensure_bucket(s3: Any, bucket: str) -> None:
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        s3.create_bucket(Bucket=bucket)


def prepare_demo_inputs(
    s3: Any, workdir: Path, samples: int, bucket: str = "wft-demo"
) -> dict[str, str]:
    """Dataset and base model into the embedded S3; returns their s3:// URIs."""
    from transformers.utils import logging as hf_logging
    from wft_trainer.tiny_whisper import build_tiny_model

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # no "Writing shards" bars
    ensure_bucket(s3, bucket)
    data_dir = workdir / "dataset"
    make_dataset(data_dir, samples)
    upload_dir(s3, data_dir, bucket, "datasets/clinic-and-call-center")
    model_dir = build_tiny_model(workdir / "tiny-whisper", num_mel_bins=80)
    upload_dir(s3, Path(model_dir), bucket, "models/tiny-whisper")
    return {
        "dataset": f"s3://{bucket}/datasets/clinic-and-call-center/",
        "model": f"s3://{bucket}/models/tiny-whisper/",
        "output": f"s3://{bucket}/adapters/",
    }
