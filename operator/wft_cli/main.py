"""`wft`: one entry point; each subcommand lives in `wft_cli/commands/<name>.py`.

Subcommand modules are imported only when used, so `wft validate` never loads torch. Every
command returns an exit code; `UserError` is how a command reports bad input or a failed run
in words, and no traceback reaches the user.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .errors import UserError

# name -> (module, one-line help). Each module defines add_arguments(parser) and run(args) -> int.
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("wft_cli.commands.validate", "check WhisperFineTune files as the cluster would"),
    "render": ("wft_cli.commands.render", "print the Job and RBAC the operator will create"),
    "prepare": ("wft_cli.commands.prepare", "run the data stage alone: S3 audio to features"),
    "train": ("wft_cli.commands.train", "run the whole trainer locally, without a cluster"),
    "model": ("wft_cli.commands.model", "import a faster-whisper (CTranslate2) base model"),
    # The laptop stand-in's commands: they live in local/ (wft_local), which no image installs.
    "up": ("wft_local.commands.up", "start an embedded cluster, S3 and the operator on loopback"),
    "demo": ("wft_local.commands.demo", "the whole loop on this machine, end to end"),
    "crd": ("wft_cli.commands.crd", "print the generated CustomResourceDefinition"),
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("whisper-finetune")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "0.0.0+unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wft", description="Fine-tune Whisper declaratively on Kubernetes (wft.dev/v1alpha1)."
    )
    parser.add_argument("--version", action="version", version=f"wft {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        try:
            importlib.import_module(module).add_arguments(p)
        except ModuleNotFoundError as err:
            # A command whose extras are not installed still shows up, and says what is missing.
            missing = str(err)
            if err.name and err.name.split(".")[0] == "wft_local":
                missing = (
                    "it comes with the laptop stand-in, a separate distribution: "
                    "pip install ./local from a checkout (make install does)"
                )
            p.set_defaults(_missing=missing)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_module", None):
        parser.print_help()
        return 2
    if getattr(args, "_missing", None):
        print(
            f"wft {args.command}: not available in this install ({args._missing})", file=sys.stderr
        )
        return 2
    try:
        return int(importlib.import_module(args._module).run(args))
    except UserError as err:
        print(f"wft {args.command}: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"wft {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
