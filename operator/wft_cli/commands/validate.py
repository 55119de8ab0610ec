"""`wft validate -f FILE`: check resources as the API server (CRD schema) and operator would."""

from __future__ import annotations

import argparse
import sys

from ..files import validated_files


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f",
        "--filename",
        required=True,
        action="append",
        metavar="FILE",
        help="YAML file with one or more resources ('-' for standard input); repeatable",
    )


def run(args: argparse.Namespace) -> int:
    results, errors = validated_files(args.filename)
    for error in errors:
        print(error, file=sys.stderr)
    failed = bool(errors)
    for source, result in results:
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
