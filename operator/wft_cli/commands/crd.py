"""`wft crd`: print the CRD generated from the API model (what `make generate` writes)."""

from __future__ import annotations

import argparse
import sys

from wft_api.crd import render_crd_yaml


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def run(args: argparse.Namespace) -> int:
    sys.stdout.write(render_crd_yaml())
    return 0
