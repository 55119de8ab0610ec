"""The demo's inputs: a cardiology dictation dataset spoken by espeak-ng, and a real Whisper.

The domain is what fine-tuning is for: drug names and findings that a general model mishears
("apixaban", "mitral regurgitation"). Sentences come from templates over a fixed vocabulary of
domain terms, and the split is by sentence, not by clip: no held-out sentence is ever heard in
training (its words are, in other sentences), and one voice speaks only held-out sentences. A
second held-out set of everyday sentences (the resource's `generalEvalManifest`) shows whether
the adapter cost general accuracy.

Clips are 22.05 kHz WAV, every fifth one FLAC, listed in NeMo JSONL manifests (`train.jsonl`,
`heldout.jsonl`, `general.jsonl`, `audio_filepath` relative to the prefix). The base model is
uploaded as the faster-whisper folder it comes in; the trainer converts it.
"""

from __future__ import annotations

import itertools
import json
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wft_api.v1alpha1 import API_VERSION, KIND

from .speech import speech_engine, synthesize, write_audio

DRUGS = [
    "metoprolol",
    "apixaban",
    "amiodarone",
    "atorvastatin",
    "clopidogrel",
    "furosemide",
    "lisinopril",
    "spironolactone",
    "rivaroxaban",
    "ticagrelor",
    "digoxin",
    "carvedilol",
]
FINDINGS = [
    "mitral regurgitation",
    "aortic stenosis",
    "tricuspid regurgitation",
    "pericardial effusion",
    "left ventricular hypertrophy",
    "diastolic dysfunction",
]
RHYTHMS = [
    "atrial fibrillation",
    "sinus bradycardia",
    "ventricular tachycardia",
    "atrial flutter",
    "first degree heart block",
]
SEVERITY = ["mild", "moderate", "severe", "trace"]
STUDIES = ["echocardiogram", "stress echocardiogram", "transesophageal echocardiogram"]
SYMPTOMS = ["palpitations", "exertional dyspnea", "orthopnea", "presyncope", "chest tightness"]
TEMPLATES = [
    "Start {drug} and continue {drug2}.",
    "Stop {drug} because of {rhythm}.",
    "The {study} shows {severity} {finding}.",
    "The electrocardiogram shows {rhythm}.",
    "Patient reports {symptom} while taking {drug}.",
    "History of {rhythm}, currently on {drug}.",
    "Increase the {drug} dose and recheck for {finding}.",
    "The {study} was ordered for {symptom}.",
    "No {finding} on the {study}.",
    "Switch from {drug} to {drug2}.",
]
# Everyday sentences, none of them trained on: the general held-out set.
GENERAL = [
    "The weather is lovely this morning.",
    "Please close the door when you leave.",
    "We are meeting for lunch at noon tomorrow.",
    "She bought fresh bread at the market.",
    "The train to the city was late again.",
    "Can you call me back after dinner?",
    "My brother plays football every weekend.",
    "I left my keys on the kitchen table.",
]
TRAIN_VOICES = ["en-us", "en-gb", "en-us+f3", "en-gb+m3", "en-us+m4"]
HELDOUT_ONLY_VOICE = "en-gb-x-rp+f2"  # speaks only held-out sentences
SPEEDS = [150, 165, 180]


@dataclass(frozen=True)
class Clip:
    text: str
    voice: str
    speed: int
    path: str  # relative to the dataset prefix


def domain_sentences(seed: int = 0) -> list[str]:
    """Every distinct sentence the templates make, in a seeded order."""
    rng = random.Random(seed)
    out: set[str] = set()
    for template in TEMPLATES:
        for _ in range(40):
            drug, drug2 = rng.sample(DRUGS, 2)
            out.add(
                template.format(
                    drug=drug,
                    drug2=drug2,
                    finding=rng.choice(FINDINGS),
                    rhythm=rng.choice(RHYTHMS),
                    severity=rng.choice(SEVERITY),
                    study=rng.choice(STUDIES),
                    symptom=rng.choice(SYMPTOMS),
                )
            )
    ordered = sorted(out)
    rng.shuffle(ordered)
    return ordered


def plan(train_sentences: int, heldout_sentences: int, seed: int = 0) -> dict[str, list[Clip]]:
    """Clips per split. Held-out sentences are disjoint from training ones; each is spoken twice,
    once by a training voice and once by the voice training never hears."""
    rng = random.Random(seed)
    sentences = domain_sentences(seed)
    if train_sentences + heldout_sentences > len(sentences):
        raise ValueError(f"the templates make only {len(sentences)} distinct sentences")
    heldout = sentences[:heldout_sentences]
    train = sentences[heldout_sentences : heldout_sentences + train_sentences]
    voices = itertools.cycle(TRAIN_VOICES)
    n = itertools.count()

    def clip(text: str, voice: str, split: str) -> Clip:
        i = next(n)
        ext = "flac" if i % 5 == 4 else "wav"  # the trainer decodes more than WAV
        return Clip(text, voice, rng.choice(SPEEDS), f"{split}/clip-{i:04d}.{ext}")

    return {
        "train": [clip(s, next(voices), "train") for s in train],
        # Which voice comes first alternates, so that the first clips (the examples the
        # evaluation keeps) include the unseen voice.
        "heldout": [
            clip(s, v, "heldout")
            for i, s in enumerate(heldout)
            for v in (next(voices), HELDOUT_ONLY_VOICE)[:: -1 if i % 2 else 1]
        ],
        "general": [
            clip(s, v, "general") for s in GENERAL for v in (next(voices), HELDOUT_ONLY_VOICE)
        ],
    }


def make_dataset(out_dir: Path, clips: dict[str, list[Clip]]) -> dict[str, int]:
    """Synthesise every clip under out_dir and write one manifest per split; returns counts."""

    def make(c: Clip) -> dict[str, Any]:
        audio, rate = synthesize(c.text, voice=c.voice, speed=c.speed)
        write_audio(out_dir / c.path, audio, rate)
        return {"audio_filepath": c.path, "text": c.text, "duration": round(len(audio) / rate, 3)}

    speech_engine()  # fail once, with the install hint, rather than once per clip
    with ThreadPoolExecutor(max_workers=2) as pool:  # each utterance is a process of its own
        for split, items in clips.items():
            entries = list(pool.map(make, items))
            (out_dir / f"{split}.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    return {split: len(items) for split, items in clips.items()}


def finetune(uris: dict[str, str], steps: int, name: str, namespace: str) -> dict[str, Any]:
    """The demo's WhisperFineTune (and `wft up`'s example): CPU-sized, everything else the
    API's defaults.

    A high learning rate and few steps, because the demo has minutes on two cores; on the
    held-out sentences it still takes tiny.en's WER from about 100% to under 10%.
    """
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "baseModel": uris["model"],
            "language": "en",
            "engine": "transformers",
            "quantization": "none",
            "dataset": {
                "uri": uris["dataset"],
                "format": "manifest",
                "manifest": "train.jsonl",
                "evalManifest": "heldout.jsonl",
                "generalEvalManifest": "general.jsonl",
            },
            "lora": {"rank": 16, "alpha": 32},
            "training": {
                "maxSteps": steps,
                "batchSize": 8,
                "learningRate": 2e-3,
                "warmupSteps": 2,
                "checkpointSteps": max(steps, 1),
            },
            # Ready to serve: merged and converted for faster-whisper, int8 for the CPU.
            "output": {
                "uri": uris["output"],
                "ctranslate2": True,
                "ctranslate2Quantization": "int8",
            },
            "resources": {"gpus": 0, "cpu": "2", "memory": "6Gi"},
        },
    }


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
    s3: Any,
    workdir: Path,
    model_dir: Path,
    model_name: str,
    clips: dict[str, list[Clip]],
    bucket: str = "wft-demo",
) -> dict[str, Any]:
    """Dataset (`plan`'s clips) and base model (the faster-whisper folder it is) into S3."""
    ensure_bucket(s3, bucket)
    data_dir = workdir / "dataset"
    counts = make_dataset(data_dir, clips)
    upload_dir(s3, data_dir, bucket, "datasets/cardiology")
    model_prefix = f"models/whisper-{model_name}"
    upload_dir(s3, model_dir, bucket, model_prefix)
    return {
        "dataset": f"s3://{bucket}/datasets/cardiology/",
        "model": f"s3://{bucket}/{model_prefix}/",
        "output": f"s3://{bucket}/adapters/",
        "counts": counts,
    }


def seed_example(s3: Any, workdir: Path, name: str = "first-finetune") -> Path:
    """`wft up`'s first step: tiny.en and the dictation dataset in the embedded S3, and a
    resource that trains on them written to `workdir/<name>.yaml`; returns its path."""
    import yaml

    from .whisper_packages import ensure_model

    uris = prepare_demo_inputs(s3, workdir / "example", ensure_model("tiny.en"), "tiny.en",
                               plan(96, 12), bucket="wft-local")  # fmt: skip
    uris.pop("counts")
    path = workdir / f"{name}.yaml"
    header = (
        "# A real Whisper (OpenAI's tiny.en) learning cardiology dictation on this machine's\n"
        f"# CPU: the model and the data are in wft up's S3 ({uris['dataset']}).\n"
    )
    path.write_text(header + yaml.safe_dump(finetune(uris, 15, name, "default"), sort_keys=False))
    return path
