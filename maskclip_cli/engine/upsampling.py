"""Class scores at feature resolution -> label and confidence maps at the original image size."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def upsample_argmax(scores: torch.Tensor, size: tuple[int, int], chunk: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinearly upsample (C, h, w) scores to ``size`` (H, W); return (labels long, confidence float).

    Classes are upsampled ``chunk`` at a time with a running max, so a large photo with many
    classes never holds the full (C, H, W) tensor.
    """
    best = conf = None
    for start in range(0, scores.shape[0], chunk):
        up = F.interpolate(scores[None, start : start + chunk].float(), size=size, mode="bilinear", align_corners=False)[0]
        c_val, c_idx = up.max(dim=0)
        if best is None:
            best, conf = c_idx + start, c_val
        else:
            better = c_val > conf
            best = torch.where(better, c_idx + start, best)
            conf = torch.where(better, c_val, conf)
    return best, conf.clamp(0, 1)
