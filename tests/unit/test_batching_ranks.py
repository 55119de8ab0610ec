"""The sampler's shares: ranks together see one process's global batches, resumably."""

from __future__ import annotations

import pytest
from wft_trainer.batching import ResumableBatchSampler


@pytest.mark.parametrize("n", [9, 12, 13])
@pytest.mark.parametrize("world", [2, 3])
def test_ranks_split_exactly_the_global_batches_of_one_process(n: int, world: int) -> None:
    one = list(ResumableBatchSampler(n, 2 * world, seed=5, start=0, stop=20))
    shares = [
        list(ResumableBatchSampler(n, 2, seed=5, start=0, stop=20, rank=r, world=world))
        for r in range(world)
    ]
    for step, whole in enumerate(one):
        assert [i for share in shares for i in share[step]] == whole
        # As even as it goes: a short last batch leaves a rank one sample less, or none.
        sizes = [len(share[step]) for share in shares]
        assert max(sizes) - min(sizes) <= 1


def test_a_resumed_rank_continues_where_it_stopped() -> None:
    straight = list(ResumableBatchSampler(13, 2, seed=1, start=0, stop=12, rank=1, world=2))
    resumed = list(ResumableBatchSampler(13, 2, seed=1, start=5, stop=12, rank=1, world=2))
    assert resumed == straight[5:]
