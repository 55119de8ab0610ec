"""Data parallelism: one trainer process per GPU (torchrun's ranks), one model replica each.

The ranks agree on everything through `Ranks`: rank 0 alone prepares the data, evaluates,
writes checkpoints, the status and the outputs; every rank trains on its share of each global
batch (`batching.ResumableBatchSampler`), and one all-reduce per optimizer step sums the LoRA
gradients (weighted by each rank's share of the label tokens, so that N ranks at batch B compute
exactly what one process computes at batch N*B), the loss, the samples and the stop request.

The LoRA parameters are few (megabytes even on large-v3), so the gradients travel as one flat
buffer reduced once per optimizer step, after the last micro-batch's backward: no
DistributedDataParallel wrapper, no bucket hooks, the same code for either engine's model.

Across several nodes (`spec.resources.nodes`, torchrun --nnodes: one pod per node) the ranks
of one node share its file system and nothing else: each node's first rank (`is_node_leader`)
fetches what the node needs (the base model, the data rank 0 prepared) and hands it to the
node's other ranks (`from_node_leader`, a broadcast in the node's own process group).

A single process (no torchrun: WORLD_SIZE unset) is `Ranks.single()`: every method is then a
no-op and no process group exists.
"""

from __future__ import annotations

import datetime
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

log = logging.getLogger(__name__)

T = TypeVar("T")

# Rank 0 alone prepares the data and evaluates while the other ranks wait for it in a
# collective; hours of audio take longer than torch's default of 10 minutes (NCCL). A rank that
# dies is caught by torchrun, which stops the others, so a long timeout costs nothing there.
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=12)


@dataclass(frozen=True)
class Ranks:
    """This process's place among the trainer's processes (torchrun's environment)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    # Ranks per node (torchrun's --nproc-per-node, the same on every node).
    local_world: int = 1

    @classmethod
    def single(cls) -> Ranks:
        return cls()

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Ranks:
        """RANK, WORLD_SIZE and LOCAL_RANK as torchrun sets them; one process without them."""
        env = dict(os.environ) if env is None else env
        world = int(env.get("WORLD_SIZE") or 1)
        if world <= 1:
            return cls.single()
        local_world = int(env.get("LOCAL_WORLD_SIZE") or world)
        if local_world < 1 or world % local_world:
            raise ValueError(
                f"LOCAL_WORLD_SIZE={local_world} does not divide WORLD_SIZE={world}: every node "
                "runs the same number of ranks (torchrun --nproc-per-node)"
            )
        rank = int(env["RANK"])
        return cls(rank, world, int(env.get("LOCAL_RANK") or rank), local_world)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def nodes(self) -> int:
        return self.world // self.local_world

    @property
    def node(self) -> int:
        """This rank's node (torchrun's --node-rank: an Indexed Job's completion index)."""
        return self.rank // self.local_world

    @property
    def is_node_leader(self) -> bool:
        """The node's first rank: it fetches what the node's file system must hold."""
        return self.local_rank == 0

    def start(self) -> None:
        """Join the process group: NCCL between GPUs (each rank on its own), gloo on the CPU."""
        if not self.distributed:
            return
        import torch.distributed as dist

        if torch.cuda.is_available():
            # Before anything touches CUDA: the engines load onto the current device.
            torch.cuda.set_device(self.local_rank)
            backend = "nccl"
        else:
            backend = "gloo"
        dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT)
        if self.nodes > 1:
            # One group per node, made by every rank in the same order (torch requires it).
            _NODE_GROUP[self] = dist.new_subgroups(self.local_world, timeout=COLLECTIVE_TIMEOUT)[0]
        log.info(
            "rank %d of %d, node %d of %d (%s)",
            self.rank,
            self.world,
            self.node,
            self.nodes,
            backend,
        )

    def stop(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            _NODE_GROUP.pop(self, None)
            if dist.is_initialized():
                dist.destroy_process_group()

    def from_main(self, value: T) -> T:
        """Rank 0's `value` on every rank (the others wait here until rank 0 sends it)."""
        if not self.distributed:
            return value
        import torch.distributed as dist

        box: list[Any] = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]  # type: ignore[no-any-return]

    def from_node_leader(self, value: T) -> T:
        """The node leader's `value` on every rank of its node (the node's others wait)."""
        if not self.distributed:
            return value
        if self.nodes == 1:
            return self.from_main(value)
        import torch.distributed as dist

        box: list[Any] = [value if self.is_node_leader else None]
        dist.broadcast_object_list(box, group=_NODE_GROUP[self], group_src=0)
        return box[0]  # type: ignore[no-any-return]

    def agree_min(self, value: int) -> int:
        """The smallest of every rank's `value` (batchSize auto: what fits on every GPU)."""
        if not self.distributed:
            return value
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.int64, device=self._device())
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return int(t.item())

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """`values` summed over the ranks (a new tensor on every rank)."""
        if not self.distributed:
            return values
        import torch.distributed as dist

        summed = values.clone()
        dist.all_reduce(summed)
        return summed

    def sum_step(
        self, params: list[torch.nn.Parameter], extras: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        """Sum the gradients of `params` and the scalars `extras` over the ranks, in one
        all-reduce; returns the summed extras. A parameter without a gradient (a rank whose
        share of a short last batch was empty) contributes zeros."""
        if not self.distributed:
            return extras
        import torch.distributed as dist

        device = params[0].device
        grads = [
            p.grad
            if p.grad is not None
            else torch.zeros_like(p, memory_format=torch.contiguous_format)
            for p in params
        ]
        flat = torch.cat(
            [g.reshape(-1).to(torch.float32) for g in grads]
            + [e.reshape(1).to(device=device, dtype=torch.float32) for e in extras]
        )
        dist.all_reduce(flat)
        offset = 0
        for p, g in zip(params, grads, strict=True):
            n = g.numel()
            p.grad = flat[offset : offset + n].view_as(g).to(g.dtype)
            offset += n
        return list(flat[offset:].unbind())

    def _device(self) -> torch.device:
        return (
            torch.device("cuda", self.local_rank)
            if torch.cuda.is_available()
            else torch.device("cpu")
        )


# A process group is no dataclass field (Ranks stays a frozen value): the node's group by Ranks.
_NODE_GROUP: dict[Ranks, Any] = {}


def work_dir(ranks: Ranks, env: dict[str, str] | None = None) -> Path:
    """WFT_WORK_DIR, else a fresh temporary folder; the ranks of one node share one (the data
    their node leader fetched is read there by the others), named after torchrun's run id."""
    env = dict(os.environ) if env is None else env
    if env.get("WFT_WORK_DIR"):
        return Path(env["WFT_WORK_DIR"])
    if ranks.distributed:
        run_id = env.get("TORCHELASTIC_RUN_ID") or env.get("MASTER_PORT") or "ranks"
        shared = Path(tempfile.gettempdir()) / f"wft-{run_id}"
        shared.mkdir(parents=True, exist_ok=True)
        return shared
    return Path(tempfile.mkdtemp(prefix="wft-"))
