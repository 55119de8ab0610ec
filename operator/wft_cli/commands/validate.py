"""`wft validate -f FILE`: check resources as the API server (CRD schema) and operator would.

The operator's part includes its guard-rails (allowed images, endpoints, ServiceAccounts,
PriorityClasses, tolerations, GPUs), read from the same WFT_* variables the operator reads:
their defaults unless set here (docs/guard-rails.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml

from ..files import add_files_argument, operator_settings, validated_files


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_files_argument(parser)
    parser.add_argument(
        "-o",
        "--output",
        choices=["text", "yaml", "json"],
        default="text",
        help="text (a line per resource or problem), or yaml/json: one record per resource "
        "with file, line, resource, valid, problems (for CI and scripts)",
    )


def run(args: argparse.Namespace) -> int:
    results, errors = validated_files(args.filename, operator_settings())
    if args.output != "text":
        return _structured(args.output, results, errors)
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


def _structured(fmt: str, results: list[Any], errors: list[str]) -> int:
    records: list[dict[str, Any]] = [{"error": e, "valid": False} for e in errors]
    for source, result in results:
        record: dict[str, Any] = {
            "file": source,
            "line": result.document.line,
            "resource": result.label,
            "valid": not result.problems and not result.skipped,
            "problems": [str(p) for p in result.problems],
        }
        if result.skipped:
            record["skipped"] = result.skipped
        records.append(record)
    if fmt == "json":
        print(json.dumps(records, indent=2))
    else:
        sys.stdout.write(yaml.safe_dump(records, sort_keys=False, width=100))
    return 1 if errors or any(r.get("problems") for r in records) else 0
