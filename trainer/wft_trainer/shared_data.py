"""The data stage once across nodes: rank 0 prepares, the other nodes download what it made.

The ranks of one node read the data their node leader holds on the pod's disk; pods on other
nodes see none of it. So with several nodes rank 0's prepared dataset (the data stage's own
output folder, the one `spec.dataset.cacheUri` caches) also goes to S3, and each other node's
leader downloads exactly that folder (rank 0 broadcasts where it is: the dataset is not listed
again, no audio fetched or decoded, so every node trains on rank 0's samples even where the
dataset changed meanwhile). Without a cacheUri the copy lives in the run's own
folder, `<run>/prepared/`, where a retried attempt's rank 0 finds it too; it is deleted with the
checkpoints once the run has published.
"""

from __future__ import annotations

import logging

from wft_api.v1alpha1 import TrainerConfig

from .data import PreparedData
from .distributed import Ranks
from .errors import TrainerFailure
from .storage import SUCCESS, S3Store

log = logging.getLogger(__name__)

RUN_PREFIX = "prepared/"


def data_config(config: TrainerConfig, ranks: Ranks) -> TrainerConfig:
    """The config the data stage runs with: across nodes, always with an S3 cache to share."""
    dataset = config.spec.dataset
    if ranks.nodes <= 1 or dataset.cache_uri:
        return config
    dataset = dataset.model_copy(update={"cache_uri": run_copy_uri(config)})
    spec = config.spec.model_copy(update={"dataset": dataset})
    return config.model_copy(update={"spec": spec})


def run_copy_uri(config: TrainerConfig) -> str:
    return config.run_output_uri + RUN_PREFIX


def share(data: PreparedData, config: TrainerConfig, store: S3Store) -> str:
    """Make sure rank 0's prepared data is in S3 for the other nodes; returns where.

    The data stage writes its cache on a best-effort basis (a failed upload only costs a later
    Job time); here the other nodes depend on it, so a failed upload fails the run."""
    cache = config.spec.dataset.cache_uri or run_copy_uri(config)
    fingerprint = data.path.name
    remote = cache.rstrip("/") + f"/{fingerprint}/"
    if not store.exists(remote + SUCCESS):
        log.info("sharing the prepared data with the other nodes: %s", remote)
        store.put_folder(data.path, remote, SUCCESS, fingerprint.encode())
    return remote


def forget(config: TrainerConfig, ranks: Ranks, store: S3Store) -> None:
    """After the run published: the run's own copy is no longer needed (a cacheUri is kept).
    A copy that cannot be deleted costs storage, not the finished run: a warning."""
    if ranks.nodes <= 1 or config.spec.dataset.cache_uri:
        return
    try:
        store.delete_prefix(run_copy_uri(config))
    except TrainerFailure as err:
        log.warning("could not delete %s: %s", run_copy_uri(config), err.message)
