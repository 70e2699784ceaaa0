"""Class scores at feature resolution -> label and confidence maps at the original image size.

Classes (or prompts) are upsampled bilinearly a few at a time, optionally refined (PAMR), and
folded into a running arg-max, so a large photo with many classes never holds the full
(C, H, W) tensor. Two kinds of input:

- probabilities (MaskCLIP's default path): the confidence is the top probability;
- cosine logits per prompt (the successors' path, and MaskCLIP's own code without key
  smoothing): softmax(``logit_scale`` · logits) is taken over all prompts *after* upsampling, a
  class's probability is the max over its prompts (synonyms compete in the softmax, as in SCLIP's
  and NACLIP's code), kept as a running log-sum-exp.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

Refine = Callable[[torch.Tensor], torch.Tensor]
_ELEMENTS_PER_CHUNK = 1 << 25  # 128 MiB of float32 per upsampled chunk


def _chunk_rows(rows: int, size: tuple[int, int], chunk: int | None) -> int:
    return chunk or max(1, min(32, _ELEMENTS_PER_CHUNK // (size[0] * size[1])))


def upsample_argmax(
    scores: torch.Tensor,
    size: tuple[int, int],
    logit_scale: float | None = None,
    groups: torch.Tensor | None = None,
    refine: Refine | None = None,
    excluded: torch.Tensor | None = None,
    chunk: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(labels (H, W) long, confidence (H, W) float)`` from (R, h, w) ``scores`` upsampled to ``size``.

    ``logit_scale`` None: ``scores`` are probabilities. Otherwise they are cosine logits, one row
    per prompt, ``groups[r]`` = prompt r's class (identity when None). ``refine`` maps an upsampled
    (1, r, H, W) chunk to its refined version (PAMR). ``excluded`` (R,) bool rows never win the
    arg-max but still count in the softmax (SCLIP's area threshold).
    """
    rows = scores.shape[0]
    step = _chunk_rows(rows, size, chunk)
    best = top = lse = None
    for start in range(0, rows, step):
        up = F.interpolate(scores[None, start : start + step].float(), size=size, mode="bilinear", align_corners=False)
        if refine is not None:
            up = refine(up)
        up = up[0]
        if logit_scale is not None:
            scaled = logit_scale * up
            part = scaled.logsumexp(dim=0)
            lse = part if lse is None else torch.logaddexp(lse, part)
            up = scaled
        if excluded is not None:
            up = up.masked_fill(excluded[start : start + step, None, None].to(up.device), -torch.inf)
        c_val, c_idx = up.max(dim=0)
        if best is None:
            best, top = c_idx + start, c_val
        else:
            better = c_val > top
            best, top = torch.where(better, c_idx + start, best), torch.where(better, c_val, top)
    if logit_scale is not None:
        conf = (top - lse).exp()
    else:
        conf = top.clamp(0, 1)
    if groups is not None:
        best = groups.to(best.device)[best]
    return best, conf
