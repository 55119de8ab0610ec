"""Transcript normalization: what is markup, what is speech."""

from __future__ import annotations

import pytest
from wft_trainer.data.normalize import MODES, normalizer


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Hello [noise] world", "Hello world"),
        ("<unk> so <sil> yes", "so yes"),
        ("well (laughs) that's it (Clears Throat)", "well that's it"),
        ("born (in 1990) here", "born (in 1990) here"),  # parentheses around words stay
        ("{breath} okay [inaudible 0:12]", "okay"),
        ("ends <|endoftext|> here", "ends here"),  # would be Whisper's own special token
        ("ｆｕｌｌ－ｗｉｄｔｈ ﬁne", "full-width fine"),  # NFKC
        ("tab\there\nnew\u00a0line\u200b zero\u200dwidth", "tab here new line zerowidth"),
        ("  Case, Punctuation! Kept?  ", "Case, Punctuation! Kept?"),
        ("a < b and c > d", "a < b and c > d"),  # comparison, not a tag
        ("[noise] [laughter]", ""),
    ],
)
def test_clean(raw: str, expected: str) -> None:
    assert normalizer("clean")(raw) == expected


def test_whisper_normalizers_lowercase_and_drop_punctuation() -> None:
    assert normalizer("whisper-basic")("Hello, World! [noise]") == "hello world"
    assert (
        normalizer("whisper-english")("Mr. Smith paid the colour\x07")
        == "mister smith paid the color"
    )


def test_none_only_strips() -> None:
    assert normalizer("none")("  [noise] As Is  ") == "[noise] As Is"


def test_unknown_mode_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="clean") as err:
        normalizer("fancy")
    assert all(mode in str(err.value) for mode in MODES)
