"""Self-training (paper §3.4): after MaskCLIP-guided learning saturates, the network's own
predictions on the training crop replace MaskCLIP's pseudo labels.

As in the authors' ``MaskClipPlusHead.assign_label``, the labels are the argmax of the training
forward pass's own (detached) logits, upsampled bilinearly to the crop; in zero-shot mode the
argmax runs over the unseen classes only, and the seen classes keep their ground truth
(:func:`.zero_shot.merge_targets`). The restriction is applied after the bilinear upsampling:
before 0.3.0 the seen classes were set to -inf first, and the upsampling's zero weights at the crop
border made those pixels NaN, labelled background (a seen class) and so left unlabelled.

Annotation-free self-training (no ground truth; the paper never uses it there) has nothing that
anchors it: every pixel's target is the network's own argmax, a positive-feedback loop in which
the class the network over-predicts takes more pixels each step. On the synthetic world the
guided network inherits MaskCLIP's bias (MaskCLIP calls 38 % of the background "green"), and within
~30 iterations every pixel is green (issue 19: 35.7 -> 0.8 mIoU). The safeguard, on by default,
is confidence-based pseudo-label selection (Lee 2013, "Pseudo-Label"; Sohn et al. 2020,
"FixMatch": only predictions above a fixed confidence become targets) with MaskCLIP's label kept
everywhere else, so the annotator keeps anchoring the pixels the network is unsure of
(:func:`anchored`). Measured (benchmarks/self_training.py, README): it does not stop the collapse
of a briefly guided network, whose confidence passes the anchor everywhere within ~30 iterations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core.constants import IGNORE_INDEX


@torch.no_grad()
def self_labels(logits: torch.Tensor, size: tuple[int, int], unseen: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels, confidence), each (B, H, W) at ``size``, from the network's (B, C, h, w) ``logits``.
    With ``unseen`` the argmax and the softmax run over those classes only (the reference's
    ``unlabeled_cats``): they are what the unlabelled pixels are for."""
    logits = F.interpolate(logits.detach().float(), size=size, mode="bilinear", align_corners=False)
    if unseen is not None:  # after the upsampling: bilinear weights of 0 times -inf are NaN (issue 19)
        keep = torch.zeros(logits.shape[1], dtype=torch.bool, device=logits.device)
        keep[unseen.to(logits.device)] = True
        logits = logits.masked_fill(~keep[None, :, None, None], -torch.inf)
    confidence, labels = logits.softmax(dim=1).max(dim=1)
    return labels, confidence


def anchored(own: torch.Tensor, confidence: torch.Tensor, guide: torch.Tensor, anchor: float) -> torch.Tensor:
    """The network's label where its ``confidence`` is at least ``anchor``, MaskCLIP's ``guide``
    label (or ignore, where MaskCLIP gave none) everywhere else."""
    return torch.where(confidence >= anchor, own, guide)


def thresholded(labels: torch.Tensor, confidence: torch.Tensor, threshold: float) -> torch.Tensor:
    """``labels`` with ignore where ``confidence`` is below ``threshold``."""
    return labels.masked_fill(confidence < threshold, IGNORE_INDEX)
