"""`wft render -f FILE`: print the ServiceAccount, Role, RoleBinding and Job the operator creates.

Validates first, exactly as `wft validate` does; the operator's settings (trainer image,
defaults, guard-rails) come from the same WFT_* environment variables the operator reads.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml
from wft_api.v1alpha1 import ResourceRef
from wft_operator.render import PLACEHOLDER_UID, render_all

from ..errors import UserError
from ..files import add_files_argument, operator_settings, validated_files


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_files_argument(parser)
    parser.add_argument(
        "-n",
        "--namespace",
        default=None,
        help="namespace for resources whose metadata names none (default: 'default')",
    )
    parser.add_argument(
        "--image",
        default=None,
        help="the operator's trainer image (WFT_TRAINER_IMAGE); spec.image still wins",
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=["yaml", "json"],
        default="yaml",
        help="yaml (one document per object, the default) or json (a v1 List, as kubectl "
        "prints several objects)",
    )


def run(args: argparse.Namespace) -> int:
    settings = operator_settings(args.image)
    objects: list[dict[str, Any]] = []
    results, errors = validated_files(args.filename, settings)
    for error in errors:
        print(error, file=sys.stderr)
    failed = bool(errors)
    for source, result in results:
        where = f"{source}:{result.document.line}: {result.label}"
        if result.skipped:
            print(f"{where}: skipped ({result.skipped})", file=sys.stderr)
            continue
        resource = result.resource
        if result.problems or resource is None:
            failed = True
            for problem in result.problems:
                print(f"{where}: {problem}", file=sys.stderr)
            continue
        meta = resource.metadata
        if meta.namespace and args.namespace and meta.namespace != args.namespace:
            raise UserError(
                f"{where}: metadata.namespace is {meta.namespace!r} but --namespace is "
                f"{args.namespace!r}; drop one of them"
            )
        ref = ResourceRef(
            namespace=meta.namespace or args.namespace or "default",
            name=meta.name,
            uid=meta.uid or PLACEHOLDER_UID,
            generation=meta.generation or 1,
        )
        objects += render_all(ref, resource.spec, settings)
    if failed:
        return 1
    if args.output == "json":
        print(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=2))
    else:
        sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=False, width=100))
    return 0
