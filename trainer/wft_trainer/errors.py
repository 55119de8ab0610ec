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


def non_finite_loss(what: str, learning_rate: float) -> TrainerFailure:
    """The model diverged (or was fed NaN): stop before anything is published."""
    return TrainerFailure(
        Reason.NON_FINITE_LOSS,
        f"{what}, so the model's weights are no longer usable and nothing was published (no "
        f"adapter, no _SUCCESS). Lower spec.training.learningRate (now {learning_rate:g}) or "
        "raise warmupSteps; if it happens from the first steps, check the base model and the "
        "data (wft prepare -f FILE --out DIR reports NaN or out-of-range audio).",
    )
