"""`python -m wft_trainer.launch <torchrun's arguments>`: torchrun, keeping the trainer's exit code.

The trainer Job of a pod with several GPUs runs this (operator's render.py): torchrun starts one
`python -m wft_trainer` per GPU. torchrun itself exits 1 whatever its workers exited with, and
the Job's podFailurePolicy reads the exit code: 3 (bad data, access denied) fails the Job at
once, anything else is retried. So this runs torchrun's own launcher with the same arguments
and exits with the most telling of the ranks' codes: 3 if a rank had it, else 143 if a rank was
stopped by SIGTERM after the checkpoint, else 1; 143 when SIGTERM reached torchrun itself (the
kubelet's, on preemption or suspend: torchrun passes it to the ranks, which checkpoint).
"""

from __future__ import annotations

import sys

from wft_api.conditions import EXIT_PREEMPTED, PERMANENT_FAILURE_EXIT_CODE

EXIT_FAILED = 1


def exit_code(rank_codes: list[int]) -> int:
    """The pod's exit code for ranks that failed with `rank_codes` (a negative one: killed by
    that signal)."""
    if PERMANENT_FAILURE_EXIT_CODE in rank_codes:
        return PERMANENT_FAILURE_EXIT_CODE
    if EXIT_PREEMPTED in rank_codes:
        return EXIT_PREEMPTED
    return EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        run(args)
    except ChildFailedError as err:
        return exit_code([failure.exitcode for failure in err.failures.values()])
    except SignalException:
        return EXIT_PREEMPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
