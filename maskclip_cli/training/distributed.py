"""Multi-GPU training under ``torchrun``: one process per GPU, DistributedDataParallel.

Nothing to configure: when torchrun sets WORLD_SIZE > 1 the process group starts from the
environment (NCCL on GPUs, Gloo on CPU) and each rank takes the GPU named by LOCAL_RANK.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        """Only the main rank writes checkpoints, metrics and progress."""
        return self.rank == 0


def setup(device: torch.device) -> Dist:
    """Join torchrun's process group when launched by it; otherwise a single process on ``device``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(device=device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), device)


def wrap(model: nn.Module, d: Dist) -> nn.Module:
    """DDP, or ``model`` itself in a single process. On GPUs batch norm is synchronised across ranks
    (the paper's SyncBN configs; parameters are shared, so the optimiser is unaffected); PyTorch's
    SyncBatchNorm has no CPU kernel, so CPU ranks keep per-rank statistics."""
    if d.world == 1:
        return model
    if d.device.type != "cuda":
        return DistributedDataParallel(model)
    return DistributedDataParallel(nn.SyncBatchNorm.convert_sync_batchnorm(model), device_ids=[d.device.index])


def teardown(d: Dist) -> None:
    if d.world > 1 and dist.is_initialized():
        dist.destroy_process_group()
