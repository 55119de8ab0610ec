"""`wft validate -f FILE`: check resources as the API server (CRD schema) and operator would."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wft_api.validation import DocumentError, load_documents, validate_documents

from ..errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f",
        "--filename",
        required=True,
        action="append",
        metavar="FILE",
        help="YAML file with one or more resources ('-' for standard input); repeatable",
    )


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


def run(args: argparse.Namespace) -> int:
    failed = False
    for name in args.filename:
        source = "<stdin>" if name == "-" else name
        try:
            docs = load_documents(read_source(name), source)
        except DocumentError as err:
            print(err, file=sys.stderr)
            failed = True
            continue
        for result in validate_documents(docs):
            where = f"{source}:{result.document.line}"
            if result.skipped:
                print(f"{where}: {result.label}: skipped ({result.skipped})")
            elif result.problems:
                failed = True
                for problem in result.problems:
                    print(f"{where}: {result.label}: {problem}", file=sys.stderr)
            else:
                print(f"{where}: {result.label}: valid")
    return 1 if failed else 0
