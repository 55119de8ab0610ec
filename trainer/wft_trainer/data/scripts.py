"""Does a transcript's writing system fit `spec.language`?

Cyrillic transcripts under `language: en`, or Latin ones under `ja`, are nearly always a mix-up
(the wrong manifest, a column of translations, a romanized copy): Whisper then learns to answer
English audio in Cyrillic. The check counts the letters of a normalized transcript by Unicode
script (the first word of each letter's Unicode name: LATIN, CYRILLIC, CJK, HIRAGANA, ...) and
calls it a mismatch when fewer than half of them belong to a script the language is written in.
Digits, punctuation and letters of no named script are not counted; a few foreign letters (a
name, "OK", "USB") are not a mismatch. With `task: translate` the labels are English, so the
expected script is Latin whatever the audio's language.
"""

from __future__ import annotations

import unicodedata
from functools import cache

LATIN = frozenset({"LATIN"})
CYRILLIC = frozenset({"CYRILLIC"})
ARABIC = frozenset({"ARABIC"})
DEVANAGARI = frozenset({"DEVANAGARI"})
HAN = frozenset({"CJK"})

# Every Whisper language (wft_api.languages) that is not written in Latin letters alone; any
# other language is expected in Latin. Where a language has two scripts in use, both count.
SCRIPTS: dict[str, frozenset[str]] = {
    "zh": HAN,
    "yue": HAN,
    "ja": HAN | {"HIRAGANA", "KATAKANA", "KATAKANA-HIRAGANA"},
    "ko": frozenset({"HANGUL"}) | HAN,
    "ru": CYRILLIC,
    "uk": CYRILLIC,
    "be": CYRILLIC,
    "bg": CYRILLIC,
    "mk": CYRILLIC,
    "tg": CYRILLIC,
    "tt": CYRILLIC,
    "ba": CYRILLIC,
    "mn": CYRILLIC | {"MONGOLIAN"},
    "kk": CYRILLIC | LATIN,
    "sr": CYRILLIC | LATIN,
    "bs": LATIN | CYRILLIC,
    "az": LATIN | CYRILLIC,
    "uz": LATIN | CYRILLIC,
    "ar": ARABIC,
    "fa": ARABIC,
    "ur": ARABIC,
    "ps": ARABIC,
    "sd": ARABIC | DEVANAGARI,
    "he": frozenset({"HEBREW"}),
    "yi": frozenset({"HEBREW"}),
    "el": frozenset({"GREEK"}),
    "hi": DEVANAGARI,
    "mr": DEVANAGARI,
    "ne": DEVANAGARI,
    "sa": DEVANAGARI,
    "bn": frozenset({"BENGALI"}),
    "as": frozenset({"BENGALI"}),  # Unicode names the Assamese letters BENGALI
    "pa": frozenset({"GURMUKHI"}) | ARABIC,
    "gu": frozenset({"GUJARATI"}),
    "ta": frozenset({"TAMIL"}),
    "te": frozenset({"TELUGU"}),
    "kn": frozenset({"KANNADA"}),
    "ml": frozenset({"MALAYALAM"}),
    "si": frozenset({"SINHALA"}),
    "th": frozenset({"THAI"}),
    "lo": frozenset({"LAO"}),
    "km": frozenset({"KHMER"}),
    "my": frozenset({"MYANMAR"}),
    "bo": frozenset({"TIBETAN"}),
    "ka": frozenset({"GEORGIAN"}),
    "hy": frozenset({"ARMENIAN"}),
    "am": frozenset({"ETHIOPIC"}),
}
KNOWN = frozenset().union(*SCRIPTS.values(), LATIN, {"MONGOLIAN"})


@cache
def _script(ch: str) -> str | None:
    if not unicodedata.category(ch).startswith("L"):
        return None
    first = unicodedata.name(ch, "").split(" ", 1)[0]
    return first if first in KNOWN else None


def expected_scripts(language: str, task: str = "transcribe") -> frozenset[str]:
    return LATIN if task == "translate" else SCRIPTS.get(language, LATIN)


def mismatch(text: str, language: str, task: str = "transcribe") -> str | None:
    """Why `text` does not look written for `language` (for the report), or None when it does."""
    expected = expected_scripts(language, task)
    counts: dict[str, int] = {}
    for ch in text:
        script = _script(ch)
        if script is not None:
            counts[script] = counts.get(script, 0) + 1
    letters = sum(counts.values())
    fitting = sum(n for s, n in counts.items() if s in expected)
    if not letters or 2 * fitting >= letters:
        return None
    most = max(counts, key=lambda s: counts[s])
    wanted = " or ".join(sorted({_display(s) for s in expected}))
    if task == "translate":
        why = "task translate makes English labels, written in"
    else:
        why = f"language {language!r} is written in"
    return f"mostly {_display(most)} letters ({counts[most]} of {letters}), but {why} {wanted}"


def _display(script: str) -> str:
    return {"CJK": "Han", "KATAKANA-HIRAGANA": "Katakana"}.get(script, script.title())
