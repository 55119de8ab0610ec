"""Transcript normalization (`spec.preprocessing.normalization`).

- `clean` (default): keep what was said, as written (case, punctuation, digits), and remove what
  was not said or what Whisper's tokenizer would learn as garbage: Unicode NFKC (full-width
  letters, ligatures, non-breaking spaces become ordinary ones), control and format characters,
  annotation markup, runs of whitespace.
- `whisper-basic` / `whisper-english`: openai-whisper's own normalizers (lowercase, no
  punctuation; the English one also spells numbers and British spellings the American way).
  Use these when the evaluation will normalize the same way.
- `none`: the text as given (stripped).

What counts as markup in `clean` (decided from common ASR corpora: Switchboard, Fisher,
LibriSpeech, Common Voice, Kaldi-style lexicons):
- anything in square brackets or braces, `[noise]`, `[laughter]`, `{breath}`, `[inaudible 0:12]`:
  corpora use brackets for annotations, speech never;
- tag-like angle brackets without spaces, `<unk>`, `<sil>`, `<noise>`, `<|endoftext|>` (the last
  would otherwise be tokenized as Whisper's own special token);
- parentheses only around a known non-speech event, `(laughs)`, `(coughing)`, `(applause)`,
  `(clears throat)`: parentheses in speech transcripts are often real words ("(in 1990)"), so
  unknown content is kept.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from functools import cache

MODES = ("none", "clean", "whisper-basic", "whisper-english")

_NON_SPEECH_WORDS = (
    "applause|breath|breathing|breathes|cough|coughs|coughing|crosstalk|crying|inaudible|"
    "laugh|laughs|laughing|laughter|music|noise|pause|sigh|sighs|sighing|silence|sneeze|"
    "sneezes|sniff|sniffs|static|unintelligible|indistinct|clears throat|clearing throat|"
    "throat clearing|background noise|lip smack|lipsmack|um|uh|hmm"
)
_MARKUP = re.compile(
    r"\[[^\[\]]{0,80}\]"  # [noise], [laughter], [inaudible 0:12]
    r"|\{[^{}]{0,80}\}"  # {breath}
    r"|<\|?[A-Za-z_/][\w\-/.|]{0,40}\|?>"  # <unk>, <sil>, </s>, <|endoftext|>
    rf"|\(\s*(?:{_NON_SPEECH_WORDS})\s*\)",  # (laughs), (clears throat)
    flags=re.IGNORECASE,
)
_WHITESPACE = re.compile(r"\s+")


def _drop_control(text: str) -> str:
    # Cc: control characters (tabs and newlines become spaces first); Cf: format characters
    # such as zero-width spaces, BOMs and bidi marks, invisible in text but not to the tokenizer.
    return "".join(
        " " if ch in "\t\n\r\x0b\x0c\x85" else ch
        for ch in text
        if unicodedata.category(ch) not in ("Cc", "Cf") or ch in "\t\n\r\x0b\x0c\x85"
    )


def clean(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = _drop_control(text)
    # Markup can nest in practice ("[noise <unk>]"); two passes take the inner then the outer.
    for _ in range(2):
        text = _MARKUP.sub(" ", text)
    # Unicode whitespace (NBSP, ideographic space) is \s too, so it collapses to one space.
    return _WHITESPACE.sub(" ", text).strip()


@cache
def _whisper(mode: str) -> Callable[[str], str]:
    # Imported lazily: openai-whisper pulls in more than this module otherwise needs.
    from whisper.normalizers import BasicTextNormalizer, EnglishTextNormalizer

    normalizer: Callable[[str], str] = (
        BasicTextNormalizer() if mode == "whisper-basic" else EnglishTextNormalizer()
    )
    return normalizer


def normalizer(mode: str) -> Callable[[str], str]:
    """The function for a normalization mode; the error lists the valid ones."""
    if mode == "none":
        return str.strip
    if mode == "clean":
        return clean
    if mode in ("whisper-basic", "whisper-english"):
        whisper_fn = _whisper(mode)

        def whisper_norm(text: str) -> str:
            # Whisper's normalizers assume printable text; clean control characters first.
            return _WHITESPACE.sub(" ", whisper_fn(_drop_control(text))).strip()

        return whisper_norm
    raise ValueError(f"unknown normalization {mode!r}; use one of: {', '.join(MODES)}")
