"""Reading WhisperFineTune files for the CLI: every command that takes `-f FILE` goes through
here, so a missing file, a YAML error or an invalid resource reads the same everywhere, and
`wft validate` and `wft render` refuse the same resources (the operator's guard-rails
included, from the same WFT_* settings the operator reads).

At most `MAX_FILE_BYTES` are read from a file or standard input (`-f /dev/zero` is refused,
not read until memory runs out); the YAML itself is read with limits on aliases and depth
(`wft_api.validation.load_documents`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import BinaryIO

from wft_api.schema_check import Problem
from wft_api.validation import DocumentError, Result, load_documents, validate_documents
from wft_operator.render import guard_rail_problems
from wft_operator.settings import Settings, SettingsError

from .errors import UserError

# Resources are small (etcd stores at most 1.5 MiB an object); a file of many is still far less.
MAX_FILE_BYTES = 4 * 1024 * 1024


def _read_limited(stream: BinaryIO, name: str) -> str:
    data = stream.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise UserError(
            f"{name}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB; resources are far "
            "smaller (is it the right file?)"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{name}: not a UTF-8 text file (byte {err.start + 1})") from None


def read_source(name: str) -> str:
    if name == "-":
        return _read_limited(sys.stdin.buffer, "<stdin>")
    path = Path(name)
    if path.is_dir():
        raise UserError(f"{name}: is a directory; give a YAML file")
    try:
        with path.open("rb") as f:
            return _read_limited(f, name)
    except FileNotFoundError:
        raise UserError(f"{name}: no such file") from None
    except OSError as err:
        raise UserError(f"{name}: cannot read ({err.strerror})") from None


def add_files_argument(parser: argparse.ArgumentParser, one: bool = False) -> None:
    """`-f FILE`, repeatable; `one`: a single file with a single resource (local runs)."""
    if one:
        what = {"help": "YAML file with one WhisperFineTune ('-' for standard input)"}
    else:
        what = {
            "action": "append",
            "help": "YAML file with one or more resources ('-' for standard input); repeatable",
        }
    parser.add_argument("-f", "--filename", required=True, metavar="FILE", **what)


def operator_settings(image: str | None = None) -> Settings:
    """The operator's settings from the WFT_* environment; `image` (--image) for the trainer's."""
    try:
        settings = Settings.from_env()
    except SettingsError as err:
        raise UserError(str(err)) from None
    if image:
        if not image.strip() or any(c.isspace() for c in image):
            raise UserError(f"--image {image!r}: an image reference without spaces")
        settings = settings.model_copy(update={"trainer_image": image})
    return settings


def validated_files(
    names: list[str], settings: Settings | None = None
) -> tuple[list[tuple[str, Result]], list[str]]:
    """(source, result) for each document of each file ('-' is stdin), and the file-level
    errors (unreadable file, YAML syntax, empty file) as messages. With `settings`, a valid
    resource is also held to the operator's guard-rails (their problems join the result's)."""
    results: list[tuple[str, Result]] = []
    errors: list[str] = []
    for name in names:
        source = "<stdin>" if name == "-" else name
        try:
            docs = load_documents(read_source(name), source)
        except (DocumentError, UserError) as err:  # one bad file does not hide the others
            errors.append(str(err))
            continue
        results += [(source, r) for r in validate_documents(docs)]
    for _, result in results:
        if settings is not None and result.resource is not None and not result.problems:
            for text in guard_rail_problems(result.resource.spec, settings):
                path, _, message = text.partition(": ")
                result.problems.append(Problem(path, message))
    return results, errors
