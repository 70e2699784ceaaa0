"""Prompt denoising (paper §3.3): drop classes that are unlikely to be in the image.

A class whose probability ``softmax(100 * logits)`` stays below ``threshold`` at every location
of an image is removed (its logits set to -100, as in the authors' code) and the remaining
classes are re-classified. With many target classes most are distractors in any one image;
removing them sharpens the prediction. One guard beyond the paper: if no class reaches the
threshold anywhere, the image is left as it is rather than emptied.
"""

from __future__ import annotations

import torch

from ..core.constants import SOFTMAX_SCALE

REMOVED_LOGIT = -100.0


def kept_classes(logits: torch.Tensor, threshold: float = 0.5, scale: float = SOFTMAX_SCALE) -> torch.Tensor:
    """(B, C) bool: which classes survive denoising, for ``logits`` of shape (B, C, h, w);
    probabilities are ``softmax(scale * logits)`` (the paper: 100)."""
    probs = (scale * logits.float()).softmax(dim=1)
    keep = probs.flatten(2).amax(dim=2) >= threshold
    keep[~keep.any(dim=1)] = True
    return keep


def prompt_denoise(logits: torch.Tensor, threshold: float = 0.5, scale: float = SOFTMAX_SCALE) -> torch.Tensor:
    """Logits with the removed classes set to ``REMOVED_LOGIT`` everywhere."""
    keep = kept_classes(logits, threshold, scale)
    return logits.masked_fill(~keep[:, :, None, None], REMOVED_LOGIT)
