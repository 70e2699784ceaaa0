"""Key smoothing (paper eq. 5): locations with similar keys should get similar predictions.

``pred_i = sum_j cos(k_i, k_j) * p_j`` with ``p = softmax(100 * logits)`` and ``k`` the last
attention layer's key features. Cosine similarity is taken over channels, as eq. 5 states
(the authors' code normalises over locations instead; see README). Negative cosines can make a
smoothed score negative: scores are clipped at 0 and renormalised per location so each location
stays a distribution. This keeps eq. 5's arg-max wherever the best smoothed score is positive; a
location whose smoothed scores are all <= 0 keeps its unsmoothed probabilities.

The (hw x hw) similarity ``S = k̂ᵀ k̂`` (unit keys k̂, K x hw) grows with the square of the patch grid
(4 GB of float32 for a 32k-token grid). :func:`key_smooth` never forms it: ``S pᵀ = k̂ᵀ (k̂ pᵀ)``, a
(K x C) product first, costs ``2·hw·K·C`` operations instead of ``hw²·(K + C)`` (ViT-B/16, K = 768,
150 classes: 4x fewer on a 32x32 grid, 16x on 32x128; ``benchmarks/key_smoothing.py``) and holds
nothing larger than the keys. Same result up to float rounding (relative 1e-6).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core.constants import SOFTMAX_SCALE

def key_similarity(keys: torch.Tensor) -> torch.Tensor:
    """(B, hw, hw) cosine similarity between the keys of all locations; ``keys`` is (B, K, h, w)."""
    k = F.normalize(keys.flatten(2).float(), dim=1)
    return k.transpose(1, 2) @ k


def _renormalise(out: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
    """Clip (B, C, n) smoothed scores at 0 and make each location a distribution; a location with
    nothing positive keeps its unsmoothed probabilities ``flat``."""
    out = out.clamp_min(0)
    total = out.sum(dim=1, keepdim=True)
    return torch.where(total > 0, out / total.masked_fill(total <= 0, 1), flat)


def smooth(probs: torch.Tensor, similarity: torch.Tensor) -> torch.Tensor:
    """Apply eq. 5 with a given (B, hw, hw) similarity to (B, C, h, w) probabilities."""
    flat = probs.flatten(2).float()
    out = (similarity @ flat.transpose(1, 2)).transpose(1, 2)
    return _renormalise(out, flat).reshape(probs.shape)


def key_smooth(logits: torch.Tensor, keys: torch.Tensor, scale: float = SOFTMAX_SCALE) -> torch.Tensor:
    """Smoothed class probabilities (B, C, h, w) from logits and key features of the same grid;
    probabilities are ``softmax(scale * logits)`` (the paper: 100).

    Equals ``smooth(probs, key_similarity(keys))``, regrouped as ``k̂ᵀ (k̂ pᵀ)`` (see the module docstring)."""
    probs = (scale * logits.float()).softmax(dim=1)
    flat = probs.flatten(2)  # (B, C, n)
    k = F.normalize(keys.flatten(2).float(), dim=1)  # (B, K, n)
    out = (k.transpose(1, 2) @ (k @ flat.transpose(1, 2))).transpose(1, 2)  # (B, n, K) @ (B, K, C) -> (B, C, n)
    return _renormalise(out, flat).reshape(probs.shape)
