"""MaskCLIP+ stages on the synthetic world, compared fairly: one guided trunk, then branches.

Self-training is judged against guided learning over the same total schedule. Both runs share
their first ``guided_iters`` iterations exactly (batches and the poly LR depend only on the seed
and the iteration), so the trunk is trained once, checkpointed at the switch, and each branch
resumes a copy of it with its own self-training options: that is ``maskclip train --resume``,
so each branch is the run an uninterrupted ``maskclip train`` would have made.

Zero-shot (the paper's transductive setting): the colours in :data:`UNSEEN` have no ground
truth; the background and the other colours do.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..core.hooks import SILENT, ProgressHook
from ..training.checkpointing import CHECKPOINT_FILE, load_checkpoint, save_checkpoint
from ..training.class_text import ClassText
from ..training.config import TrainConfig
from ..training.loop import train
from .world import CLASSES

UNSEEN: tuple[str, ...] = CLASSES[1::3]  # every third colour: orange, cyan, white
GUIDED_ONLY = "guided only"


@dataclass(frozen=True)
class StageScores:
    """mIoU (0-1) on the held-out scenes: all classes, seen (background included), unseen."""

    miou: float
    seen: float
    unseen: float


def stage_scores(per_class_iou: list[float], unseen: tuple[str, ...] = UNSEEN) -> StageScores:
    """Split per-class IoUs (0-1; background first, then :data:`CLASSES`) into seen and unseen."""
    iou = np.asarray(per_class_iou, dtype=float)
    is_unseen = np.array([False] + [c in unseen for c in CLASSES])
    return StageScores(float(np.nanmean(iou)), float(np.nanmean(iou[~is_unseen])), float(np.nanmean(iou[is_unseen])))


class _StopAt(ProgressHook):
    """Stops a run between steps after ``n`` iterations (the loop saves a checkpoint and raises KeyboardInterrupt)."""

    def __init__(self, n: int, hook: ProgressHook):
        self.n, self.seen, self.hook = n, 0, hook

    def advance(self, n: int = 1, **fields: object) -> None:
        self.seen += n
        if self.seen >= self.n:
            raise KeyboardInterrupt

    def warn(self, message: str) -> None:  # the "interrupted" notice is expected here
        pass

    def info(self, message: str) -> None:
        self.hook.info(message)


def train_branches(trunk: TrainConfig, text: ClassText, branches: dict[str, dict], device: str = "cpu",
                   hook: ProgressHook = SILENT) -> dict[str, Path]:
    """Train ``trunk`` (a self-training config) up to its switch, then each branch ``name ->
    TrainConfig changes`` to ``trunk.iters`` from a copy of that checkpoint; {name: run folder}.
    :data:`GUIDED_ONLY` in ``branches`` means: no self-training."""
    shutil.rmtree(trunk.out, ignore_errors=True)
    hook.info(f"Training the guided trunk: {trunk.guided} iterations")
    try:
        train(trunk, text, device=device, hook=_StopAt(trunk.guided, hook))
    except KeyboardInterrupt:
        pass
    runs = {}
    for name, changes in branches.items():
        out = trunk.out.parent / f"{trunk.out.name}-{name.replace('+', '').replace(' ', '-')}"
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(trunk.out, out)
        state = load_checkpoint(out / CHECKPOINT_FILE)
        state.pop("format")
        state["config"].update(changes)
        save_checkpoint(out / CHECKPOINT_FILE, state)
        hook.info(f"Training branch '{name}': iterations {trunk.guided} -> {trunk.iters}")
        train(replace(trunk, out=out), text, device=device, resume=True, hook=hook, given=())
        runs[name] = out
    return runs


def guided_only() -> dict:
    """The branch changes that make the rest of the schedule MaskCLIP-guided."""
    return {"self_train": False, "guided_iters": None}
