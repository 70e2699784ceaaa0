"""Class scores at feature resolution -> label and confidence maps at the original image size.

Classes (or prompts) are upsampled bilinearly a few at a time, optionally refined (PAMR), and
folded into a running arg-max, so a large photo with many classes never holds the full
(C, H, W) tensor: the running arg-max is folded in place (class ids as int16), so the full-size
work of a 12000x9000 photo is a few (H, W) maps. Two kinds of input:

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
    """``(labels (H, W) int16 (long beyond 32767 rows), confidence (H, W) float)`` from (R, h, w)
    ``scores`` upsampled to ``size``.

    ``logit_scale`` None: ``scores`` are probabilities. Otherwise they are cosine logits, one row
    per prompt, ``groups[r]`` = prompt r's class (identity when None). ``refine`` maps an upsampled
    (1, r, H, W) chunk to its refined version (PAMR). ``excluded`` (R,) bool rows never win the
    arg-max but still count in the softmax (SCLIP's area threshold).
    """
    rows = scores.shape[0]
    step = _chunk_rows(rows, size, chunk)
    index_dtype = torch.int16 if rows <= torch.iinfo(torch.int16).max else torch.long
    best = torch.zeros(size, dtype=index_dtype, device=scores.device)
    top = torch.full(size, -torch.inf, device=scores.device)
    lse = None
    for start in range(0, rows, step):
        up = F.interpolate(scores[None, start : start + step].float(), size=size, mode="bilinear", align_corners=False)
        if refine is not None:
            up = refine(up)
        up = up[0]
        if logit_scale is not None:
            up.mul_(logit_scale)
            part = up.logsumexp(dim=0)
            lse = part if lse is None else torch.logaddexp(lse, part, out=lse)
        if excluded is not None:
            up.masked_fill_(excluded[start : start + step, None, None].to(up.device), -torch.inf)
        for j, row in enumerate(up):  # fold in place, row by row: no (H, W) int64 temporaries
            better = row > top  # strict: the first of equal scores wins, as max(dim=0) does
            best.masked_fill_(better, start + j)
            torch.maximum(top, row, out=top)
        del up
    if logit_scale is not None:
        conf = top.sub_(lse).exp_()
    else:
        conf = top.clamp_(0, 1)
    if groups is not None:
        best = groups.to(device=best.device, dtype=best.dtype)[best.int()]
    return best, conf
