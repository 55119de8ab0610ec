"""`python -m wft_trainer`: what the trainer Job runs.

Reads the TrainerConfig JSON once (from the file WFT_CONFIG_FILE names: the operator mounts it
from a ConfigMap; else from the WFT_CONFIG variable, for local runs), runs the pipeline, and on
failure writes the cause where the operator reads it: the pod's termination message
(`{"reason", "message"}` JSON in WFT_TERMINATION_LOG, by default /dev/termination-log when it
is writable); its own report in `status.trainer` says Failed in words. Exit codes: 0 done, 1 failed (the Job may retry), 3
failed for a cause a retry cannot fix (bad data, access denied: the Job's podFailurePolicy
fails it at once), 143 stopped by SIGTERM after a checkpoint (so the retry resumes).

Under torchrun (several GPUs: `wft_trainer.launch`) each rank runs this; rank 0 alone reports
to the status and writes the termination message, and the ranks of a node share a work dir.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from pathlib import Path

from pydantic import ValidationError
from wft_api.conditions import (
    EXIT_PREEMPTED,
    PERMANENT_FAILURE_EXIT_CODE,
    PERMANENT_REASONS,
    Reason,
)
from wft_api.v1alpha1 import TrainerConfig

from .distributed import Ranks, work_dir
from .errors import TrainerFailure
from .status import KubeStatusReporter, Reporter
from .timing import mark_process_start

log = logging.getLogger("wft_trainer")

EXIT_FAILED = 1
DEFAULT_TERMINATION_LOG = "/dev/termination-log"


def read_config() -> TrainerConfig:
    path = os.environ.get("WFT_CONFIG_FILE")
    if path:
        where = path
        try:
            raw = Path(path).read_text()
        except OSError as err:
            raise TrainerFailure(
                Reason.TRAINER_ERROR, f"cannot read the config file {path}: {err}"
            ) from None
    else:
        where, raw = "WFT_CONFIG", os.environ.get("WFT_CONFIG") or ""
        if not raw:
            raise TrainerFailure(
                Reason.TRAINER_ERROR,
                "neither WFT_CONFIG_FILE nor WFT_CONFIG is set (TrainerConfig JSON)",
            )
    try:
        return TrainerConfig.model_validate_json(raw)
    except ValidationError as err:
        raise TrainerFailure(
            Reason.TRAINER_ERROR, f"{where} is not a valid config: {err}"
        ) from None


def write_termination_log(reason: str, message: str) -> None:
    if not Ranks.from_env().is_node_leader:
        # One writer per pod: the node's first rank (rank 0 on node 0), whose message is the
        # pod's; another rank's would overwrite it. A node of its own writes its own cause (it
        # could not fetch the shared data), which the operator prefers to its peers' collateral.
        return
    path = os.environ.get("WFT_TERMINATION_LOG")
    if path is None:
        if not os.access(DEFAULT_TERMINATION_LOG, os.W_OK):
            return
        path = DEFAULT_TERMINATION_LOG
    # The kubelet keeps at most 4096 bytes of it.
    Path(path).write_text(json.dumps({"reason": reason, "message": message[:3500]}))


def main() -> int:
    logging.basicConfig(
        level=os.environ.get("WFT_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    reporter: Reporter = Reporter()
    ranks = Ranks.from_env()
    try:
        config = read_config()
        if config.report_status and ranks.is_main:
            reporter = KubeStatusReporter(config.resource)
        from .loop import Preempted
        from .pipeline import StopRequest, run

        stop = StopRequest()
        stop.install()
        ranks.start()
        try:
            result = run(config, reporter, work_dir(ranks), stop, ranks)
        except Preempted as err:
            log.warning("%s", err)
            reporter.close()
            return EXIT_PREEMPTED
        finally:
            ranks.stop()
        log.info("done: %s", result.run_uri)
        return 0
    except TrainerFailure as err:
        failure = err
    except Exception as err:  # anything unforeseen: the status says what, the log says where
        traceback.print_exc()
        failure = TrainerFailure(Reason.TRAINER_ERROR, f"{type(err).__name__}: {err}")
    log.error("failed (%s): %s", failure.reason, failure.message)
    write_termination_log(failure.reason, failure.message)  # the operator's source: first
    reporter.finished(False, failure.reason, failure.message, None)
    return PERMANENT_FAILURE_EXIT_CODE if failure.reason in PERMANENT_REASONS else EXIT_FAILED


if __name__ == "__main__":
    # Only as the Job's process: tests that call main() in theirs must not date every later
    # in-process run's startup from the test session's start.
    mark_process_start()
    sys.exit(main())
