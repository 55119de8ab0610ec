"""The shared `wft.dev/v1alpha1` API: typed model, CRD generation and validation.

Imports nothing heavier than pydantic and PyYAML, so the operator image, the trainer and the
CLI can all depend on it.
"""

from .v1alpha1 import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    ResourceRef,
    TrainerConfig,
    WhisperFineTune,
    WhisperFineTuneSpec,
    WhisperFineTuneStatus,
    run_output_uri,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "ResourceRef",
    "TrainerConfig",
    "WhisperFineTune",
    "WhisperFineTuneSpec",
    "WhisperFineTuneStatus",
    "run_output_uri",
]
