"""Labelling under torchrun: each rank is one shard of the folder.

``torchrun --nproc-per-node G [--nnodes M ...] -m maskclip_cli label ...`` starts G x M processes;
rank R of W labels shard R/W (see :mod:`.sharding`) on GPU ``LOCAL_RANK`` and writes its own
manifest part. No process group is needed: shards never exchange data, and the last rank to
finish merges the parts (a rank that finishes hours before another never waits on a barrier).
"""

from __future__ import annotations

import os


def torchrun_shard() -> tuple[int, int] | None:
    """(RANK, WORLD_SIZE) when launched by torchrun with more than one process, else None."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return (int(os.environ.get("RANK", "0")), world) if world > 1 else None


def rank_device(device: str) -> str:
    """A rank's device: ``cuda`` / ``auto`` on a GPU machine become the rank's local GPU."""
    if torchrun_shard() is None or device not in ("auto", "cuda"):
        return device
    import torch

    if not torch.cuda.is_available():
        return device
    return f"cuda:{int(os.environ.get('LOCAL_RANK', '0')) % torch.cuda.device_count()}"
