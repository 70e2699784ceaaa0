"""Transductive zero-shot targets: ground truth for seen classes, pseudo labels for the rest.

Ground-truth pixels of unseen classes are masked to ignore before anything else sees them, and
:func:`check_no_unseen` enforces it, so an unseen class can only be learnt from MaskCLIP's (or the
model's own) predictions, as the zero-shot protocol requires. Unlabelled pixels take a pseudo
label only when it is an unseen class: the reference takes the argmax over the classes without
ground truth, and a stored label map holds only the argmax over all classes, so a seen-class
pseudo label there carries no usable unseen-class answer and is ignored.
"""

from __future__ import annotations

import torch

from ..core.constants import IGNORE_INDEX
from ..core.errors import MaskCLIPError


def mask_unseen(gt: torch.Tensor, unseen: torch.Tensor) -> torch.Tensor:
    """Ground truth with every pixel of an ``unseen`` class id set to ignore."""
    return gt.masked_fill(torch.isin(gt, unseen.to(gt.device)), IGNORE_INDEX)


def check_no_unseen(gt: torch.Tensor, unseen: torch.Tensor) -> None:
    """Raise if any ground-truth pixel carries an unseen class: that would leak unseen labels."""
    if torch.isin(gt, unseen.to(gt.device)).any():
        raise MaskCLIPError("Internal error: ground truth still carries unseen classes after masking; refusing to train.")


def merge_targets(gt: torch.Tensor, pseudo: torch.Tensor, unseen: torch.Tensor | None) -> torch.Tensor:
    """Training target: the pseudo labels in annotation-free mode (``unseen`` None); otherwise the
    (already masked) ground truth, with unseen-class pseudo labels where it is unlabelled."""
    if unseen is None:
        return pseudo
    check_no_unseen(gt, unseen)
    fill = (gt == IGNORE_INDEX) & torch.isin(pseudo, unseen.to(pseudo.device))
    return torch.where(fill, pseudo, gt)
