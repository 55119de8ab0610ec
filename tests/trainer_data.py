"""A small prepared dataset built in-process (the data stage's output format), for trainer tests
that do not need audio decoding: features from the real feature extractor on synthetic tones,
labels with Whisper's prefix from the real tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]


def build_split(processor: Any, n: int, seed: int, out: Path | None = None) -> Any:
    import datasets

    rng = np.random.default_rng(seed)
    tok = processor.tokenizer
    prefix = tok.convert_tokens_to_ids(
        ["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]
    )
    rows: dict[str, list[Any]] = {"input_features": [], "labels": [], "text": []}
    for i in range(n):
        word = WORDS[i % len(WORDS)]
        text = f"{word} {WORDS[(i * 3 + 1) % len(WORDS)]}"
        # A tone whose pitch depends on the first word: the model can learn the mapping.
        t = np.arange(16000 * 2) / 16000
        audio = 0.3 * np.sin(2 * np.pi * (200 + 80 * WORDS.index(word)) * t)
        audio = (audio + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
        feats = processor.feature_extractor(audio, sampling_rate=16000).input_features[0]
        rows["input_features"].append(feats.astype(np.float16))
        rows["labels"].append(prefix + tok.encode(" " + text, add_special_tokens=False) + [50257])
        rows["text"].append(text)
    n_mels = rows["input_features"][0].shape[0]
    features = datasets.Features(
        {
            "input_features": datasets.Array2D((n_mels, 3000), "float16"),
            "labels": datasets.Sequence(datasets.Value("int32")),
            "text": datasets.Value("string"),
        }
    )
    ds = datasets.Dataset.from_dict(rows, features=features)
    if out is not None:
        ds.save_to_disk(str(out))
        ds = datasets.load_from_disk(str(out))
    return ds
