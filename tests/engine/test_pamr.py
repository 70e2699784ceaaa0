"""PAMR against the reference's formulation (dilated 3x3 convolution kernels), written out here."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from maskclip_cli.engine.pamr import pamr


def _kernels(kind: str) -> torch.Tensor:
    """Shift kernels: 'diff' = centre minus each of the 8 neighbours, 'copy' = each neighbour, 'all' = the 9 cells."""
    cells = [(i, j) for i in range(3) for j in range(3)]
    ring = [c for c in cells if c != (1, 1)]
    pos = cells if kind == "all" else ring
    w = torch.zeros(len(pos), 1, 3, 3)
    for n, (i, j) in enumerate(pos):
        w[n, 0, i, j] = 1
        if kind == "diff":
            w[n, 0, 1, 1] = 1
            w[n, 0, i, j] = -1
    return w


def _local(x: torch.Tensor, kind: str, dilations) -> torch.Tensor:
    b, k, h, w = x.shape
    flat = x.reshape(b * k, 1, h, w)
    outs = [F.conv2d(F.pad(flat, [d] * 4, mode="replicate"), _kernels(kind), dilation=d) for d in dilations]
    return torch.cat(outs, 1).reshape(b, k, -1, h, w)


def reference_pamr(image, scores, iterations, dilations):
    scores = F.interpolate(scores, size=image.shape[-2:], mode="bilinear", align_corners=True)
    std = _local(image, "all", dilations).std(2, keepdim=True)
    aff = (-_local(image, "diff", dilations).abs() / (1e-8 + 0.1 * std)).mean(1, keepdim=True).softmax(2)
    for _ in range(iterations):
        scores = (_local(scores, "copy", dilations) * aff).sum(2)
    return scores


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("dilations,iterations", [((8, 16), 10), ((1,), 3), ((2, 3), 5)])
def test_matches_reference(dilations, iterations):
    torch.manual_seed(0)
    image = torch.randn(2, 3, 37, 53)
    image[:, :, 10:20, 5:30] += 3  # an edge for the affinities to follow
    scores = torch.randn(2, 5, 9, 13)
    got = pamr(image, scores, iterations, dilations, class_chunk=2)
    assert got.shape == (2, 5, 37, 53)
    assert rel_err(got, reference_pamr(image, scores, iterations, dilations)) < 1e-5


def test_distribution_stays_a_distribution_and_constant_scores_stay():
    torch.manual_seed(1)
    image = torch.rand(1, 3, 40, 40)
    probs = torch.randn(1, 4, 40, 40).softmax(1)
    out = pamr(image, probs)
    assert torch.allclose(out.sum(1), torch.ones(1, 40, 40), atol=1e-5) and out.min() >= 0
    const = torch.full((1, 3, 40, 40), 0.25)
    assert torch.allclose(pamr(image, const), const, atol=1e-6)


def test_constant_image_averages_neighbours_uniformly():
    """With nothing to follow, every neighbour weighs the same (the reference's behaviour): one
    iteration is the plain mean of the 8 dilated neighbours; a spatially constant map is unchanged."""
    scores = torch.randn(1, 2, 20, 24)
    image = torch.full((1, 3, 20, 24), 0.7)
    one = pamr(image, scores, iterations=1, dilations=(2,))
    expected = _local(scores, "copy", (2,)).mean(2)
    assert rel_err(one, expected) < 1e-6
    flat = torch.full((1, 2, 20, 24), 3.0)
    assert torch.allclose(pamr(image, flat), flat)

