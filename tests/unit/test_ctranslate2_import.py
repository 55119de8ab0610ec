"""faster-whisper (CTranslate2) folders -> transformers: every weight back where it came from.

CTranslate2's own converter writes the folders (a small random Whisper, in each weight type
a team may have stored), and the import must give back the original parameters: exactly for
float32, to float16's or int8's rounding otherwise. Files that are not such a model are refused
with a message naming the file. Real tiny.en and base: tests/integration/test_real_whisper.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

ctranslate2 = pytest.importorskip("ctranslate2")

from wft_trainer.models.ctranslate2_file import ModelFileError  # noqa: E402
from wft_trainer.models.ctranslate2_import import import_ctranslate2  # noqa: E402


def export(model_dir: Path, out: Path, quantization: str) -> Path:
    from ctranslate2.converters import TransformersConverter

    TransformersConverter(str(model_dir), copy_files=["tokenizer.json"]).convert(
        str(out), quantization=quantization, force=True
    )
    return out


@pytest.fixture(scope="module")
def original(tiny_model_dir: Path) -> dict[str, torch.Tensor]:
    from transformers import WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration.from_pretrained(tiny_model_dir, dtype=torch.float32)
    return {k: v for k, v in model.state_dict().items() if k != "proj_out.weight"}


# quantization -> the largest error allowed, relative to each tensor's largest magnitude
TOLERANCE = {"float32": 1e-6, "float16": 1e-3, "bfloat16": 8e-3, "int16": 2e-3, "int8": 1e-2}


@pytest.mark.parametrize("quantization", sorted(TOLERANCE))
def test_every_parameter_comes_back(
    tiny_model_dir: Path,
    original: dict[str, torch.Tensor],
    tmp_path: Path,
    quantization: str,
) -> None:
    from transformers import WhisperForConditionalGeneration

    folder = export(tiny_model_dir, tmp_path / "ct2", quantization)
    imported = import_ctranslate2(folder, tmp_path / "hf")
    model = WhisperForConditionalGeneration.from_pretrained(tmp_path / "hf", dtype=torch.float32)
    state = model.state_dict()
    assert set(original) <= set(state)
    for name, want in original.items():
        got = state[name]
        assert got.shape == want.shape, name
        scale = float(want.abs().max()) or 1.0
        assert float((got - want).abs().max()) <= TOLERANCE[quantization] * scale, name
    # Tied output projection, and the vocabulary the weights imply.
    assert model.proj_out.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()
    assert imported.vocabulary.size == 51866 and not imported.english_only


def test_the_import_is_a_complete_transformers_folder(tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import GenerationConfig, WhisperProcessor

    import_ctranslate2(export(tiny_model_dir, tmp_path / "ct2", "float16"), tmp_path / "hf")
    processor = WhisperProcessor.from_pretrained(tmp_path / "hf", local_files_only=True)
    assert len(processor.tokenizer) == 51866
    gen = GenerationConfig.from_pretrained(tmp_path / "hf")
    assert gen.no_timestamps_token_id == 50364 and gen.lang_to_id["<|yue|>"] == 50358
    assert (tmp_path / "hf" / "normalizer.json").is_file()


def _ct2(tiny_model_dir: Path, tmp_path: Path) -> Path:
    return export(tiny_model_dir, tmp_path / "ct2", "float16")


def test_a_truncated_model_file_is_named(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = _ct2(tiny_model_dir, tmp_path)
    data = (folder / "model.bin").read_bytes()
    (folder / "model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match=r"model\.bin: ends at byte .* truncated"):
        import_ctranslate2(folder, tmp_path / "hf")


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"PK\x03\x04 a zip file", "not a CTranslate2 model.bin"),
        (b"\x03\x00\x00\x00", "binary version 3"),
        (b"", "is empty"),
    ],
)
def test_a_file_that_is_not_a_model_is_named(
    tiny_model_dir: Path, tmp_path: Path, content: bytes, words: str
) -> None:
    folder = _ct2(tiny_model_dir, tmp_path)
    (folder / "model.bin").write_bytes(content)
    with pytest.raises(ModelFileError, match=str(folder / "model.bin")) as err:
        import_ctranslate2(folder, tmp_path / "hf")
    assert words in str(err.value)


def test_a_tokenizer_that_disagrees_with_the_weights_is_refused(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    folder = _ct2(tiny_model_dir, tmp_path)
    tok = json.loads((folder / "tokenizer.json").read_text())
    for added in tok["added_tokens"]:
        if added["content"] == "<|notimestamps|>":
            added["id"] = 50363
    (folder / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(ModelFileError, match=r"tokenizer\.json: <\|notimestamps\|> has id 50363"):
        import_ctranslate2(folder, tmp_path / "hf")


def test_a_folder_without_config_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = _ct2(tiny_model_dir, tmp_path)
    (folder / "config.json").unlink()
    with pytest.raises(ModelFileError, match=r"config\.json: missing"):
        import_ctranslate2(folder, tmp_path / "hf")
    shutil.rmtree(tmp_path / "hf", ignore_errors=True)
