"""What `wft prepare` and `wft train` share: one validated resource from a file, and the
TrainerConfig a local run (no cluster, no status patches) hands to the trainer code."""

from __future__ import annotations

from wft_api.v1alpha1 import ResourceRef, TrainerConfig, WhisperFineTune
from wft_api.validation import DocumentError, load_documents, validate_documents

from .commands.validate import read_source
from .errors import UserError


def load_resource(name: str) -> WhisperFineTune:
    """Exactly one WhisperFineTune from FILE ('-' for stdin), valid, or a UserError naming why."""
    source = "<stdin>" if name == "-" else name
    try:
        docs = load_documents(read_source(name), source)
    except DocumentError as err:
        raise UserError(str(err)) from None
    results = [r for r in validate_documents(docs) if not r.skipped]
    if len(results) != 1:
        raise UserError(f"{source}: expected exactly one WhisperFineTune, found {len(results)}")
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
