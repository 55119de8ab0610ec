"""`wft prepare -f finetune.yaml --out DIR`: the data stage alone, on this machine.

The same code the trainer runs first: S3 audio -> 16 kHz mono -> normalized transcripts ->
Whisper log-mel features in a `datasets` dataset under DIR, plus DIR/report.json (format,
samples, evalSamples, hours, skipped, skippedReasons, skippedFiles, warnings; written when the
stage fails too, with `failure` saying why). S3 credentials come from
the standard AWS environment (AWS_ACCESS_KEY_ID, AWS_PROFILE, AWS_ENDPOINT_URL, ...). The base
model's processor decides the number of mel bins and the tokenizer (an s3:// baseModel is
downloaded; a Hugging Face id must be in the local Hugging Face cache or reachable).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..files import add_files_argument
from ..local_run import load_resource, local_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_files_argument(parser, one=True)
    parser.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="where the dataset is written"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="feature processes (default: the CPUs allowed)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def run(args: argparse.Namespace) -> int:
    config = local_config(load_resource(args.filename))
    # Heavy imports only now, so `wft --help` stays fast.
    from wft_trainer.data import DataStageFailure, prepare
    from wft_trainer.errors import TrainerFailure
    from wft_trainer.models.source import load_processor, resolve_base_model
    from wft_trainer.storage import S3Store

    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a directory")

    def progress(done: int, total: int) -> None:
        if not args.quiet:
            print(f"\rprocessing audio: {done}/{total}", end="", file=sys.stderr, flush=True)

    try:
        store = S3Store.from_spec(config.spec.storage)
        source = resolve_base_model(config.spec, store, out / "models")
        processor = load_processor(source, config.spec)
        data = prepare(config, processor, out, store, on_progress=progress, workers=args.workers)
    except DataStageFailure as err:
        # The report of a failed stage too: every skipped file, and why it failed.
        if not args.quiet:
            print(file=sys.stderr)
        where = write_report(out, err.report)
        print(err.report.summary())
        raise UserError(f"{err.reason}: {err.message}\nreport: {where}") from None
    except TrainerFailure as err:
        if not args.quiet:
            print(file=sys.stderr)
        raise UserError(f"{err.reason}: {err.message}") from None
    if not args.quiet:
        print(file=sys.stderr)
    report = data.report
    write_report(out, report)
    print(report.summary())
    splits = "train/, eval/" + (", general/" if data.general is not None else "")
    print(f"dataset: {data.path} ({splits}: datasets.load_from_disk)")
    print(f"report: {out / 'report.json'}")
    return 0


def write_report(out: Path, report: Any) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.json"
    path.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return path
