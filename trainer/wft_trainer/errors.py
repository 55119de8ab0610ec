"""The failure a trainer stage raises when the run cannot go on, in words a user can act on.

`reason` is one of `wft_api.conditions.Reason` (BadData, S3AccessDenied, CudaOutOfMemory, ...);
the entry point writes it to the resource's status and to the pod's termination message, so the
operator keeps it instead of a bare exit code.
"""

from __future__ import annotations

from wft_api.conditions import Reason


class TrainerFailure(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


def bad_data(message: str) -> TrainerFailure:
    return TrainerFailure(Reason.BAD_DATA, message)
