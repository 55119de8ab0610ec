"""`wft model import SRC DST`: a faster-whisper (CTranslate2) Whisper as a transformers folder.

The trainer converts a faster-whisper `spec.baseModel` itself, on every new pod unless
`spec.dataset.cacheUri` keeps the result; a team that would rather store the converted model
once runs this and points `spec.baseModel` at DST. SRC and DST are each a local folder or an
`s3://` prefix (S3 credentials and endpoint from the standard AWS environment, such as
AWS_ENDPOINT_URL). DST must be empty: nothing is overwritten.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError

if TYPE_CHECKING:
    from wft_trainer.storage import S3Store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="model_command", metavar="COMMAND", required=True)
    imp = sub.add_parser(
        "import",
        help="convert a faster-whisper (CTranslate2) Whisper into a transformers folder",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    imp.add_argument("source", metavar="SRC", help="folder or s3:// prefix: model.bin, config.json")
    imp.add_argument("dest", metavar="DST", help="empty folder or s3:// prefix to write")


def run(args: argparse.Namespace) -> int:
    from wft_trainer.errors import TrainerFailure
    from wft_trainer.models.ctranslate2_file import ModelFileError
    from wft_trainer.models.ctranslate2_import import import_ctranslate2, is_ctranslate2_layout
    from wft_trainer.storage import S3Store

    store = S3Store.from_spec() if "s3://" in (args.source + args.dest) else None
    try:
        _require_empty(args.dest, store)  # before any download
        with tempfile.TemporaryDirectory(prefix="wft-model-import-") as tmp:
            source = Path(args.source)
            if store is not None and args.source.startswith("s3://"):
                source = Path(tmp) / "source"
                store.download_prefix(args.source, source)
            elif not source.is_dir():
                raise UserError(f"{args.source}: no such folder")
            if not is_ctranslate2_layout(p.name for p in source.iterdir()):
                raise UserError(
                    f"{args.source}: no model.bin; expected a faster-whisper (CTranslate2) "
                    "folder with model.bin, config.json and tokenizer.json"
                )
            converted = Path(tmp) / "converted"
            imported = import_ctranslate2(source, converted)
            if store is not None and args.dest.startswith("s3://"):
                store.upload_dir(converted, args.dest)
            else:
                Path(args.dest).mkdir(parents=True, exist_ok=True)
                for f in sorted(converted.iterdir()):
                    shutil.move(f, Path(args.dest) / f.name)  # another file system: a copy
    except ModelFileError as err:
        raise UserError(str(err)) from None
    except TrainerFailure as err:
        raise UserError(f"{err.reason}: {err.message}") from None
    except OSError as err:
        raise UserError(f"{args.dest}: cannot write ({err})") from None
    print(f"imported {args.source}: {imported.describe()}")
    print(f"wrote {args.dest} (transformers save_pretrained folder); use it as spec.baseModel")
    return 0


def _require_empty(dest: str, store: S3Store | None) -> None:
    if store is not None and dest.startswith("s3://"):
        prefix = dest if dest.endswith("/") else dest + "/"
        if next(iter(store.list(prefix)), None) is not None:
            raise UserError(f"{dest}: not empty; give a prefix with nothing under it")
    elif Path(dest).exists() and (not Path(dest).is_dir() or any(Path(dest).iterdir())):
        raise UserError(f"{dest}: exists and is not an empty folder")
