"""Key smoothing (paper eq. 5): locations with similar keys should get similar predictions.

``pred_i = sum_j cos(k_i, k_j) * p_j`` with ``p = softmax(100 * logits)`` and ``k`` the last
attention layer's key features. Cosine similarity is taken over channels, as eq. 5 states
(the authors' code normalises over locations instead; see README). Negative cosines can make a
smoothed score negative: scores are clipped at 0 and renormalised per location so each location
stays a distribution. This keeps eq. 5's arg-max wherever the best smoothed score is positive; a
location whose smoothed scores are all <= 0 keeps its unsmoothed probabilities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .prompt_denoising import SOFTMAX_SCALE


def key_similarity(keys: torch.Tensor) -> torch.Tensor:
    """(B, hw, hw) cosine similarity between the keys of all locations; ``keys`` is (B, K, h, w)."""
    k = F.normalize(keys.flatten(2).float(), dim=1)
    return k.transpose(1, 2) @ k


def smooth(probs: torch.Tensor, similarity: torch.Tensor) -> torch.Tensor:
    """Apply eq. 5 with a given (B, hw, hw) similarity to (B, C, h, w) probabilities."""
    b, c, h, w = probs.shape
    flat = probs.flatten(2).float()
    out = (similarity @ flat.transpose(1, 2)).transpose(1, 2).clamp_min(0)
    total = out.sum(dim=1, keepdim=True)
    out = torch.where(total > 0, out / total.masked_fill(total <= 0, 1), flat)
    return out.reshape(b, c, h, w)


def key_smooth(logits: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Smoothed class probabilities (B, C, h, w) from logits and key features of the same grid."""
    probs = (SOFTMAX_SCALE * logits.float()).softmax(dim=1)
    return smooth(probs, key_similarity(keys))
