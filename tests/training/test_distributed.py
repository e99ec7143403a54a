"""A distributed stage's process group is destroyed before the process exits (clf.training.distributed)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from clf.training.distributed import leaving_process_group


@pytest.fixture
def gloo_group(tmp_path: Path) -> Callable[[], None]:
    """What Lightning's DDP strategy does on each rank: a Gloo group (here of one rank, through a file store)."""
    assert not dist.is_initialized()

    def start() -> None:
        dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)

    return start


def test_the_group_a_stage_started_is_destroyed_when_it_ends(gloo_group):
    with leaving_process_group():
        gloo_group()
        work = dist.all_reduce(torch.ones(3), async_op=True)  # work held by Gloo's threads, as DDP's buckets are
        work.wait()
    assert not dist.is_initialized()


def test_the_group_is_destroyed_when_the_stage_fails_and_the_error_propagates(gloo_group):
    with pytest.raises(ValueError, match="boom"), leaving_process_group():
        gloo_group()
        raise ValueError("boom")
    assert not dist.is_initialized()


def test_a_stage_without_a_group_is_left_alone():
    with leaving_process_group():
        pass
    assert not dist.is_initialized()
