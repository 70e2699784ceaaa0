"""PAMR: pixel-adaptive mask refinement (Araslanov & Roth, CVPR 2020; visinf/1-stage-wseg
``models/mods/pamr.py``), the post-processing SCLIP and NACLIP offer.

Scores are upsampled to the image, then repeatedly replaced by an affinity-weighted average of
their neighbours at the given dilations (8 neighbours per dilation, replicate padding). The
affinity of a neighbour is ``softmax_p(mean_channels(-|I_i - I_p| / (1e-8 + 0.1·std_i)))``, where
``std_i`` is the unbiased standard deviation of the image over the 3x3 neighbourhoods (centre
included) at all dilations. Affinities sum to 1, so a distribution stays a distribution.

Computed the same way as the reference, but lean: the affinity (B, 8·len(dilations), H, W) is
built one neighbour at a time (never the reference's (B, 3, 9·len(dilations), H, W) stack), once
per image, and classes are refined ``class_chunk`` at a time, so memory is about
``(8·len(dilations) + 3·class_chunk)`` floats per pixel whatever the number of classes.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
import torch.nn.functional as F

from .config import PAMR_DILATIONS, PAMR_ITERATIONS

_NEIGHBOURS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


def _shifted(x: torch.Tensor, dilations: Sequence[int], centre: bool = False) -> Iterator[torch.Tensor]:
    """Each dilated 3x3 neighbour of every pixel (replicate padding), dilation by dilation."""
    h, w = x.shape[-2:]
    for d in dilations:  # past the border replicate padding repeats it: a dilation over the side equals side - 1
        a, b = min(d, h - 1), min(d, w - 1)
        padded = F.pad(x, [b, b, a, a], mode="replicate")
        for dy, dx in ([(0, 0)] if centre else []) + _NEIGHBOURS:
            yield padded[..., a + dy * a : a + dy * a + h, b + dx * b : b + dx * b + w]


def pamr_affinity(image: torch.Tensor, dilations: Sequence[int] = PAMR_DILATIONS) -> torch.Tensor:
    """(B, P, H, W) neighbour weights (softmax over the P = 8·len(dilations) neighbours) of an image (B, K, H, W)."""
    image = image.float()
    n = 9 * len(dilations)
    mean = sum(_shifted(image, dilations, centre=True)) / n
    var = sum((s - mean).square() for s in _shifted(image, dilations, centre=True)) / (n - 1)
    denom = 1e-8 + 0.1 * var.sqrt()
    b, _, h, w = image.shape
    aff = image.new_empty(b, 8 * len(dilations), h, w)
    for p, s in enumerate(_shifted(image, dilations)):
        aff[:, p] = (-(image - s).abs() / denom).mean(dim=1)
    aff -= aff.amax(dim=1, keepdim=True)  # softmax over the neighbours, in place (the largest tensor here)
    aff.exp_()
    aff /= aff.sum(dim=1, keepdim=True)
    return aff


def pamr_propagate(
    scores: torch.Tensor, affinity: torch.Tensor, iterations: int = PAMR_ITERATIONS, dilations: Sequence[int] = PAMR_DILATIONS,
) -> torch.Tensor:
    """Refine (B, C, H, W) scores already at the affinity's size."""
    for _ in range(iterations):
        out = torch.zeros_like(scores)
        for p, neighbour in enumerate(_shifted(scores, dilations)):
            out += neighbour * affinity[:, p : p + 1]
        scores = out
    return scores


def pamr(
    image: torch.Tensor, scores: torch.Tensor, iterations: int = PAMR_ITERATIONS,
    dilations: Sequence[int] = PAMR_DILATIONS, class_chunk: int = 16,
) -> torch.Tensor:
    """Refine ``scores`` (B, C, h, w) guided by ``image`` (B, 3, H, W), returning (B, C, H, W).

    ``scores`` are first resized bilinearly (align_corners=True, as the reference) to the image.
    """
    affinity = pamr_affinity(image, dilations)
    size = image.shape[-2:]
    out = []
    for start in range(0, scores.shape[1], class_chunk):
        chunk = F.interpolate(scores[:, start : start + class_chunk].float(), size=size, mode="bilinear", align_corners=True)
        out.append(pamr_propagate(chunk, affinity, iterations, dilations))
    return torch.cat(out, dim=1)
