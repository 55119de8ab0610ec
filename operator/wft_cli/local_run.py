"""What `wft prepare` and `wft train` share: one validated resource from a file, and the
TrainerConfig a local run (no cluster, no status patches) hands to the trainer code."""

from __future__ import annotations

from wft_api.v1alpha1 import ResourceRef, TrainerConfig, WhisperFineTune

from .errors import UserError
from .files import validated_files


def load_resource(name: str) -> WhisperFineTune:
    """Exactly one WhisperFineTune from FILE ('-' for stdin), valid, or a UserError naming why."""
    source = "<stdin>" if name == "-" else name
    found, errors = validated_files([name])
    if errors:
        raise UserError(errors[0])
    # A document that is not an object at all (a stray scalar or list) is an error of its own,
    # never counted as a resource.
    stray = [r for _, r in found if not isinstance(r.document.data, dict)]
    if stray:
        lines = ", ".join(str(r.document.line) for r in stray)
        raise UserError(
            f"{source}: {len(stray)} document(s) that are not Kubernetes objects "
            f"(a mapping with apiVersion and kind), at line(s) {lines}"
        )
    results = [r for _, r in found if not r.skipped]
    if len(results) != 1:
        where = f" (at lines {', '.join(str(r.document.line) for r in results)})" if results else ""
        others = len(found) - len(results)
        rest = f"; {others} other object(s) skipped" if others else ""
        raise UserError(
            f"{source}: expected exactly one WhisperFineTune, found {len(results)}{where}{rest}"
        )
    result = results[0]
    if result.problems or result.resource is None:
        lines = "\n".join(f"  {p}" for p in result.problems)
        raise UserError(f"{source}:{result.document.line}: {result.label} is not valid:\n{lines}")
    return result.resource


def local_config(resource: WhisperFineTune, namespace: str | None = None) -> TrainerConfig:
    """Generation from metadata.generation (1 when absent), namespace from metadata or `default`."""
    meta = resource.metadata
    return TrainerConfig(
        resource=ResourceRef(
            namespace=meta.namespace or namespace or "default",
            name=meta.name,
            generation=meta.generation or 1,
        ),
        spec=resource.spec,
        report_status=False,
    )
