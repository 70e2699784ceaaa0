"""Key smoothing (paper eq. 5): locations with similar keys should get similar predictions.

``pred_i = sum_j cos(k_i, k_j) * p_j`` with ``p = softmax(100 * logits)`` and ``k`` the last
attention layer's key features. Cosine similarity is taken over channels, as eq. 5 states
(the authors' code normalises over locations instead; see README). Negative cosines can make a
smoothed score negative: scores are clipped at 0 and renormalised per location so each location
stays a distribution. This keeps eq. 5's arg-max wherever the best smoothed score is positive; a
location whose smoothed scores are all <= 0 keeps its unsmoothed probabilities.

The (hw x hw) similarity grows with the square of the patch grid (4 GB of float32 for a 32k-token
grid): :func:`key_smooth` computes it a block of rows at a time, never holding more than
``max_elements`` of it, with the same result as the whole matrix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core.constants import SOFTMAX_SCALE

MAX_SIMILARITY_ELEMENTS = 1 << 24  # rows of the similarity held at once: 64 MB of float32 per batch


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


def key_smooth(
    logits: torch.Tensor, keys: torch.Tensor, max_elements: int = MAX_SIMILARITY_ELEMENTS, scale: float = SOFTMAX_SCALE,
) -> torch.Tensor:
    """Smoothed class probabilities (B, C, h, w) from logits and key features of the same grid;
    probabilities are ``softmax(scale * logits)`` (the paper: 100).

    Equals ``smooth(probs, key_similarity(keys))``, computed ``max_elements // (B * hw)`` rows of the
    similarity at a time so memory stays bounded however large the grid."""
    probs = (scale * logits.float()).softmax(dim=1)
    flat = probs.flatten(2)
    k = F.normalize(keys.flatten(2).float(), dim=1)  # (B, K, n)
    b, n = k.shape[0], k.shape[2]
    rows = max(1, max_elements // (b * n))
    out = torch.empty_like(flat)
    for i in range(0, n, rows):
        sim = k[:, :, i : i + rows].transpose(1, 2) @ k  # (B, rows, n)
        out[:, :, i : i + rows] = (sim @ flat.transpose(1, 2)).transpose(1, 2)
    return _renormalise(out, flat).reshape(probs.shape)
