"""Sliding-window inference (MMSegmentation's 'slide' scheme): where windows start, and one loop
that runs a model over them and averages the overlaps (used by the feature and the logit path)."""

from __future__ import annotations

from typing import Callable

import torch

from ..clip.preprocess import window_starts


def slide(
    images: torch.Tensor, window: int, stride: int, run: Callable[[torch.Tensor], torch.Tensor],
    cell: int = 1, windows_per_pass: int = 16,
) -> torch.Tensor:
    """``run`` over sliding windows of ``images`` (B, 3, H, W), averaged where windows overlap.

    ``run`` maps stacked crops (n·B, 3, h, w) to maps (n·B, C, h / cell, w / cell): ``cell`` is the
    output's pixels per cell (the patch size for features, 1 for upsampled logits). Windows (all the
    same size) go through ``run`` stacked, ``windows_per_pass`` at a time; the result is (B, C, H / cell, W / cell)."""
    b, _, height, width = images.shape
    starts = [(y, x) for y in window_starts(height, window, stride) for x in window_starts(width, window, stride)]
    per_pass = max(1, windows_per_pass // b)
    total = None
    count = torch.zeros(1, 1, height // cell, width // cell, device=images.device)
    for i in range(0, len(starts), per_pass):
        chunk = starts[i : i + per_pass]
        out = run(torch.cat([images[:, :, y : y + window, x : x + window] for y, x in chunk]))
        if total is None:
            total = out.new_zeros(b, out.shape[1], height // cell, width // cell)
        for j, (y, x) in enumerate(chunk):
            cells = (slice(None), slice(None), slice(y // cell, y // cell + out.shape[2]), slice(x // cell, x // cell + out.shape[3]))
            total[cells] += out[j * b : (j + 1) * b]
            count[cells] += 1
    return total / count
