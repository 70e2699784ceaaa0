"""Self-training (paper §3.4): after MaskCLIP-guided learning saturates, the network's own
predictions on the training crop replace MaskCLIP's pseudo labels."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core.constants import IGNORE_INDEX
from .deeplab import DeepLabV2


@torch.no_grad()
def self_labels(model: DeepLabV2, images: torch.Tensor, unseen: torch.Tensor | None, threshold: float = 0.0) -> torch.Tensor:
    """(B, H, W) labels the model gives the crop (in eval mode, so batch statistics are not
    disturbed), ignore where its confidence is below ``threshold``. In zero-shot mode the argmax
    runs over the unseen classes only: those are what the unlabelled pixels are for."""
    logits = model.predict_logits(images)
    if unseen is not None:
        keep = torch.zeros(logits.shape[1], dtype=torch.bool, device=logits.device)
        keep[unseen.to(logits.device)] = True
        logits = logits.masked_fill(~keep[None, :, None, None], -torch.inf)
    logits = F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
    confidence, labels = logits.softmax(dim=1).max(dim=1)
    return labels.masked_fill(confidence < threshold, IGNORE_INDEX)
