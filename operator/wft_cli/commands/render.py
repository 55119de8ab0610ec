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
from wft_operator.render import PLACEHOLDER_UID, guard_rail_problems, render_all
from wft_operator.settings import Settings, SettingsError

from ..errors import UserError
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


def _settings(image: str | None) -> Settings:
    try:
        settings = Settings.from_env()
    except SettingsError as err:
        raise UserError(str(err)) from None
    if image:
        if not image.strip() or any(c.isspace() for c in image):
            raise UserError(f"--image {image!r}: an image reference without spaces")
        settings = settings.model_copy(update={"trainer_image": image})
    return settings


def run(args: argparse.Namespace) -> int:
    settings = _settings(args.image)
    objects: list[dict[str, Any]] = []
    results, errors = validated_files(args.filename)
    for error in errors:
        print(error, file=sys.stderr)
    failed = bool(errors)
    for source, result in results:
        where = f"{source}:{result.document.line}: {result.label}"
        if result.skipped:
            print(f"{where}: skipped ({result.skipped})", file=sys.stderr)
            continue
        resource = result.resource
        problems = [str(p) for p in result.problems]
        if resource is not None:
            problems += guard_rail_problems(resource.spec, settings)
        if problems or resource is None:
            failed = True
            for problem in problems:
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
