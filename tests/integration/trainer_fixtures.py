"""Shared setup for the trainer's integration tests: real speech (espeak-ng) and the tiny random
Whisper in moto's S3, and a finetune spec that trains on them for a few dozen CPU steps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PHRASES = [
    "the heart rate is regular",
    "blood pressure is normal",
    "no chest pain today",
    "take one tablet daily",
    "follow up next week",
    "the lungs are clear",
]


def upload_dir(s3: Any, local: Path, bucket: str, prefix: str) -> None:
    for f in sorted(local.rglob("*")):
        if f.is_file():
            s3.upload_file(str(f), bucket, f"{prefix}{f.relative_to(local).as_posix()}")


def stage_s3(
    s3: Any, tmp: Path, model_dir: Path, bucket: str, n_train: int = 12, n_eval: int = 4
) -> None:
    """Dataset (JSONL manifests) under s3://bucket/data/, the model under s3://bucket/model/."""
    from wft_local.speech import speech_file

    s3.create_bucket(Bucket=bucket)
    data = tmp / "data"
    lines: dict[str, list[str]] = {"train": [], "eval": []}
    for i in range(n_train + n_eval):
        split = "train" if i < n_train else "eval"
        text = PHRASES[i % len(PHRASES)]
        _, secs = speech_file(data / f"clips/{i:03d}.wav", text, rate_hz=16000, speed=150 + i)
        lines[split].append(
            json.dumps({"audio_filepath": f"clips/{i:03d}.wav", "text": text, "duration": secs})
        )
    for split, rows in lines.items():
        (data / f"{split}.jsonl").write_text("\n".join(rows) + "\n")
    upload_dir(s3, data, bucket, "data/")
    upload_dir(s3, model_dir, bucket, "model/")


def spec(bucket: str, **training: Any) -> dict[str, Any]:
    return {
        "baseModel": f"s3://{bucket}/model/",
        "language": "en",
        "quantization": "4bit",  # on the CPU: trains unquantized and says so
        "dataset": {
            "uri": f"s3://{bucket}/data/",
            "format": "manifest",
            "manifest": "train.jsonl",
            "evalManifest": "eval.jsonl",
        },
        "lora": {"rank": 8, "alpha": 16},
        "training": {
            "maxSteps": 30,
            "batchSize": 4,
            "learningRate": 1e-2,
            "warmupSteps": 2,
            "checkpointSteps": 10,
            "seed": 7,
            **training,
        },
        "output": {"uri": f"s3://{bucket}/out/"},
        "storage": {"addressingStyle": "path"},
    }
