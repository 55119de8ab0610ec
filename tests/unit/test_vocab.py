"""The built-in Whisper processors: the same ids as openai-whisper's own tokenizer, no hub."""

from __future__ import annotations

import pytest
from wft_trainer.models import vocab
from wft_trainer.models.vocab import OPENAI_CHECKPOINTS, Vocabulary

TEXTS = [
    "Start the patient on metoprolol 25 mg, twice daily!",
    "Échocardiographie: ñ 中文, \u2019quoted\u2019 and  double  spaces",
]


@pytest.mark.parametrize(
    "vocabulary", [Vocabulary(False, 99), Vocabulary(True, 99), Vocabulary(True, 100)], ids=str
)
def test_tokenizer_matches_openai_whisper(vocabulary: Vocabulary) -> None:
    from whisper.tokenizer import get_tokenizer

    ours = vocab.build_tokenizer(vocabulary)
    theirs = get_tokenizer(vocabulary.multilingual, num_languages=vocabulary.num_languages)
    assert len(ours) == vocabulary.size == theirs.encoding.n_vocab
    for text in TEXTS:
        assert ours.encode(text, add_special_tokens=False) == theirs.encode(text)
    for token, token_id in vocabulary.ids().items():
        assert ours.convert_tokens_to_ids(token) == token_id
        assert theirs.special_tokens[token] == token_id
    assert ours.convert_tokens_to_ids("<|0.00|>") == theirs.timestamp_begin
    assert ours.decode(ours.encode(TEXTS[0]), skip_special_tokens=True) == TEXTS[0]


def test_vocabulary_from_size_names_the_known_sizes() -> None:
    assert Vocabulary.of_size(51864) == Vocabulary(False, 99)
    assert Vocabulary.of_size(51866).num_languages == 100
    with pytest.raises(ValueError, match="51864 for English-only"):
        Vocabulary.of_size(50000)


def test_every_openai_checkpoint_has_a_processor_and_others_none() -> None:
    assert {"openai/whisper-tiny.en", "openai/whisper-large-v3-turbo"} <= set(OPENAI_CHECKPOINTS)
    processor = vocab.builtin_processor("openai/whisper-large-v3")
    assert processor.feature_extractor.feature_size == 128
    assert processor.tokenizer.convert_tokens_to_ids("<|yue|>") == 50358
    english = vocab.builtin_processor("openai/whisper-base.en")
    assert english.feature_extractor.feature_size == 80 and len(english.tokenizer) == 51864
    assert vocab.builtin_processor("distil-whisper/distil-large-v3") is None


def test_generation_config_of_an_english_only_model_has_no_languages() -> None:
    gen = vocab.generation_config(Vocabulary(False, 99), suppress_tokens=[1, 2])
    assert gen.is_multilingual is False and not getattr(gen, "lang_to_id", None)
    assert (gen.decoder_start_token_id, gen.no_timestamps_token_id) == (50257, 50362)
    multi = vocab.generation_config(Vocabulary(True, 99), suppress_tokens=[])
    assert multi.lang_to_id["<|en|>"] == 50259 and multi.task_to_id["transcribe"] == 50359
