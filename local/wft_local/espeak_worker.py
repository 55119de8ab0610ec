"""Speak one utterance with libespeak-ng and write its 16-bit PCM to stdout.

Run as a script by `speech.synthesize`, one process per utterance, as the espeak-ng command
is: the library keeps state from one utterance to the next (its pitch flutter runs on), so in
a long-lived process the same sentence comes out a few samples different each time, and the
demo's and the tests' audio would depend on what was spoken before it. A fresh process makes
every clip a function of its text, voice and speed alone.

Standard library only (it runs with `python -I -S`, starting in a few milliseconds):
    python espeak_worker.py LIBRARY DATA_DIR VOICE SPEED RATE_HZ < text
(RATE_HZ: the rate the caller reads the samples at; another is a failure)
Exit status 2 with a message on stderr when the voice is unknown or synthesis fails.
"""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path
from typing import Any, ClassVar

# speak_lib.h (espeak-ng 1.52): espeak_AUDIO_OUTPUT, espeak_POSITION_TYPE, the text flags and
# the parameter ids.
AUDIO_OUTPUT_SYNCHRONOUS = 2  # samples go to the callback; espeak_Synth returns when done
POS_CHARACTER = 1
CHARS_UTF8 = 1
PARAM_RATE = 1  # words per minute, as the espeak-ng command's -s


class Voice(ctypes.Structure):
    """speak_lib.h's espeak_VOICE: what espeak_SetVoiceByProperties matches on."""

    _fields_: ClassVar = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class Failure(Exception):
    pass


def set_voice(lib: Any, data: Path, voice: str) -> None:
    """As the espeak-ng command's -v: a voice file's name (`en-gb-x-rp`, with an optional
    `+variant` such as `+f2`), else the best voice for a language of that name (`en-gb`)."""
    language, _, variant = voice.partition("+")
    # The library ignores a variant it cannot find; the command line would too, but a typo
    # in a test's or the demo's voice list should not pass for the plain voice.
    if variant and not (data / "voices" / "!v" / variant).is_file():
        raise Failure(f"espeak-ng has no voice variant {variant!r} (in {voice!r})")
    if lib.espeak_SetVoiceByName(voice.encode()) == 0:
        return
    if lib.espeak_SetVoiceByProperties(ctypes.byref(Voice(languages=language.encode()))):
        raise Failure(f"espeak-ng has no voice {voice!r} (try en-us, en-gb, en-gb+m3)")
    if variant:  # found by language, the variant was dropped: put it back on that voice
        lib.espeak_GetCurrentVoice.restype = ctypes.POINTER(Voice)
        found = lib.espeak_GetCurrentVoice().contents.identifier.decode()
        if lib.espeak_SetVoiceByName(f"{found}+{variant}".encode()):
            raise Failure(f"espeak-ng cannot combine {found!r} with variant {variant!r}")


def speak(library: str, data: Path, voice: str, speed: int, rate_hz: int, text: str) -> bytes:
    try:
        lib = ctypes.CDLL(library)
    except OSError as err:
        raise Failure(f"libespeak-ng does not load: {err}") from None
    rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, str(data).encode(), 0)
    if rate <= 0:
        raise Failure(f"libespeak-ng failed to start (voices at {data})")
    if rate != rate_hz:  # the caller reads the samples at that rate
        raise Failure(f"libespeak-ng speaks at {rate} Hz, not {rate_hz}")
    # Voices with breath in them (the f2 variant) draw noise from a generator the library
    # seeds from the clock; a fixed seed makes their clips reproducible too.
    lib.espeak_ng_SetRandSeed(1)
    chunks: list[bytes] = []

    def collect(wav: Any, count: int, _events: Any) -> int:
        if count > 0:
            chunks.append(ctypes.string_at(wav, count * 2))
        return 0  # go on

    callback = SynthCallback(collect)  # held here: the library calls it until Synchronize
    lib.espeak_SetSynthCallback(callback)
    set_voice(lib, data, voice)
    lib.espeak_SetParameter(PARAM_RATE, speed, 0)
    encoded = text.encode()
    size = ctypes.c_size_t(len(encoded) + 1)
    status = lib.espeak_Synth(encoded, size, 0, POS_CHARACTER, 0, CHARS_UTF8, None, None)
    lib.espeak_Synchronize()
    if status != 0 or not chunks:
        raise Failure(f"espeak-ng could not speak {text[:60]!r} (status {status})")
    return b"".join(chunks)


def main(argv: list[str]) -> int:
    library, data, voice, speed, rate_hz = argv
    try:
        text = sys.stdin.buffer.read().decode()
        pcm = speak(library, Path(data), voice, int(speed), int(rate_hz), text)
    except Failure as err:
        print(err, file=sys.stderr)
        return 2
    sys.stdout.buffer.write(pcm)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
