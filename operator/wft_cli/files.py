"""Reading WhisperFineTune files for the CLI: every command that takes `-f FILE` goes through
here, so a missing file, a YAML error or an invalid resource reads the same everywhere."""

from __future__ import annotations

import sys
from pathlib import Path

from wft_api.validation import DocumentError, Result, load_documents, validate_documents

from .errors import UserError


def read_source(name: str) -> str:
    if name == "-":
        return sys.stdin.read()
    path = Path(name)
    if path.is_dir():
        raise UserError(f"{name}: is a directory; give a YAML file")
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{name}: no such file") from None
    except UnicodeDecodeError:
        raise UserError(f"{name}: not a UTF-8 text file") from None
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
        except DocumentError as err:
            errors.append(str(err))
            continue
        results += [(source, r) for r in validate_documents(docs)]
    return results, errors
