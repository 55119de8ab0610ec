"""Reading WhisperFineTune files for the CLI: every command that takes `-f FILE` goes through
here, so a missing file, a YAML error or an invalid resource reads the same everywhere.

At most `MAX_FILE_BYTES` are read from a file or standard input (`-f /dev/zero` is refused,
not read until memory runs out); the YAML itself is read with limits on aliases and depth
(`wft_api.validation.load_documents`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import BinaryIO

from wft_api.validation import DocumentError, Result, load_documents, validate_documents

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


def validated_files(names: list[str]) -> tuple[list[tuple[str, Result]], list[str]]:
    """(source, result) for each document of each file ('-' is stdin), and the file-level
    errors (unreadable file, YAML syntax, empty file) as messages."""
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
    return results, errors
