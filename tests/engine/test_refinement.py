"""Key smoothing, prompt denoising, sliding windows and upsampling (paper §3.3 refinements)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from conftest import make_tiny_clip

from maskclip_cli.clip.dense import dense_features
from maskclip_cli.core.constants import SOFTMAX_SCALE
from maskclip_cli.engine.key_smoothing import key_similarity, key_smooth, smooth
from maskclip_cli.engine.maskclip import MaskCLIP, MaskCLIPConfig
from maskclip_cli.engine.prompt_denoising import (
    REMOVED_LOGIT,
    kept_classes,
    prompt_denoise,
)
from maskclip_cli.engine.sliding_window import window_starts
from maskclip_cli.engine.upsampling import upsample_argmax
from maskclip_cli.core.errors import MaskCLIPError


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def logits_for(probs: torch.Tensor) -> torch.Tensor:
    """Logits whose softmax(100 * logits) over dim 1 is exactly ``probs``."""
    return probs.log() / SOFTMAX_SCALE


# -- key smoothing ----------------------------------------------------------------------------------


def test_key_smoothing_with_identity_similarity_is_a_no_op():
    """Orthonormal one-hot keys (cos = identity) leave softmax(100 * logits) unchanged."""
    h, w = 3, 4
    keys = torch.eye(h * w + 2)[: h * w].T.reshape(1, h * w + 2, h, w) * 3.0  # K > hw, one-hot per location
    assert torch.allclose(key_similarity(keys)[0], torch.eye(h * w))
    logits = torch.randn(1, 5, h, w) * 0.05
    out = key_smooth(logits, keys)
    assert rel_err(out, (SOFTMAX_SCALE * logits).softmax(dim=1)) < 1e-6


def test_key_similarity_is_cosine_over_channels():
    """key_similarity[i, j] = cos(k_i, k_j) over channels, for row-major locations."""
    keys = torch.randn(2, 6, 3, 5)
    flat = keys.flatten(2).transpose(1, 2)  # (B, hw, K)
    want = F.cosine_similarity(flat[:, :, None], flat[:, None], dim=-1)
    assert rel_err(key_similarity(keys), want) < 1e-5


def test_key_smoothing_equals_eq5_and_rows_are_distributions():
    """With positively correlated keys, smoothing = (cos-weighted sum of p_j) renormalised per location,
    and every location's output is a distribution."""
    keys = torch.randn(1, 8, 4, 4) + 2.0  # shared positive component: all cosines > 0
    logits = torch.randn(1, 6, 4, 4) * 0.03
    probs = (SOFTMAX_SCALE * logits).softmax(dim=1)
    sim = key_similarity(keys)
    assert sim.min() > 0
    raw = torch.einsum("bij,bcj->bci", sim, probs.flatten(2))
    want = (raw / raw.sum(dim=1, keepdim=True)).reshape(probs.shape)
    out = key_smooth(logits, keys)
    assert rel_err(out, want) < 1e-5
    assert torch.allclose(out.sum(dim=1), torch.ones(1, 4, 4), atol=1e-5)


def test_key_smoothing_rows_are_distributions_with_real_tiny_vit_keys():
    """Random-weight ViT keys have strongly negative cosines; the output still is a distribution at
    every location and keeps eq. 5's arg-max wherever the best smoothed score is positive."""
    clip = make_tiny_clip("vit")
    torch.manual_seed(0)
    _, keys = dense_features(clip.model.visual, torch.randn(2, 3, 64, 96))
    sim = key_similarity(keys)
    assert sim.min() < -0.3  # the case that matters (negative cosines) is exercised
    logits = torch.randn(2, 7, 8, 12) * 0.05
    out = key_smooth(logits, keys)
    assert out.min() >= 0 and out.max() <= 1
    assert torch.allclose(out.sum(dim=1), torch.ones(2, 8, 12), atol=1e-5)
    raw = torch.einsum("bij,bcj->bci", sim, (SOFTMAX_SCALE * logits).softmax(dim=1).flatten(2)).reshape(out.shape)
    positive = raw.amax(dim=1) > 0
    assert positive.float().mean() > 0.5
    assert torch.equal(out.argmax(dim=1)[positive], raw.argmax(dim=1)[positive])


def test_smooth_keeps_probabilities_where_all_smoothed_scores_are_non_positive():
    """A location whose cosine-weighted scores are all <= 0 keeps its unsmoothed probabilities."""
    probs = torch.tensor([[0.5, 0.5], [0.6, 0.4]]).T.reshape(1, 2, 1, 2)  # (B, C, h, w), two locations
    sim = torch.tensor([[[1.0, 0.0], [-5.0, 1.0]]])  # location 1 is anti-correlated with location 0
    assert (torch.einsum("ij,cj->ci", sim[0], probs[0, :, 0])[:, 1] <= 0).all()
    out = smooth(probs, sim)
    assert torch.allclose(out[..., 0], probs[..., 0])
    assert torch.allclose(out[..., 1], probs[..., 1])


# -- prompt denoising -------------------------------------------------------------------------------


def _probs(*pixels: list[float]) -> torch.Tensor:
    """(1, C, 1, n) probabilities from n per-pixel class distributions."""
    return torch.tensor(pixels).T.reshape(1, len(pixels[0]), 1, len(pixels))


def test_prompt_denoising_keeps_classes_reaching_t_and_removes_the_rest():
    """A class reaching t somewhere is kept; a class below t everywhere gets REMOVED_LOGIT everywhere;
    kept classes' logits are untouched."""
    logits = logits_for(_probs([0.7, 0.2, 0.09, 0.01], [0.1, 0.55, 0.34, 0.01], [0.3, 0.3, 0.39, 0.01]))
    keep = kept_classes(logits, 0.5)
    assert keep.tolist() == [[True, True, False, False]]
    out = prompt_denoise(logits, 0.5)
    assert torch.equal(out[:, :2], logits[:, :2])
    assert (out[:, 2:] == REMOVED_LOGIT).all()


def test_prompt_denoising_is_per_image():
    """Each image of a batch keeps its own classes."""
    a = _probs([0.9, 0.05, 0.05], [0.8, 0.1, 0.1])
    b = _probs([0.1, 0.1, 0.8], [0.3, 0.3, 0.4])
    keep = kept_classes(logits_for(torch.cat([a, b])), 0.5)
    assert keep.tolist() == [[True, False, False], [False, False, True]]


def test_prompt_denoising_leaves_labels_of_pixels_with_kept_argmax_unchanged():
    """Random logits: every pixel whose arg-max class is kept keeps its label after re-classification."""
    torch.manual_seed(0)
    logits = torch.randn(3, 12, 6, 7) * 0.02
    keep = kept_classes(logits, 0.5)
    assert (~keep).any() and keep.any()  # some classes removed, some kept
    before = logits.argmax(dim=1)
    after = prompt_denoise(logits, 0.5).argmax(dim=1)
    kept_argmax = keep.gather(1, before.flatten(1)).reshape(before.shape)
    assert kept_argmax.any()
    assert torch.equal(after[kept_argmax], before[kept_argmax])


def test_prompt_denoising_can_remove_a_pixels_argmax_class():
    """The issue's phrase "never removes the arg-max class of any pixel" is false for the paper's rule:
    a pixel's arg-max class can have probability < t at every location and is then removed, so that
    pixel is re-labelled. This pins the paper's rule (what we implement) rather than the phrase."""
    logits = logits_for(_probs([0.45, 0.35, 0.20], [0.05, 0.90, 0.05]))
    assert logits[0, :, 0, 0].argmax() == 0
    out = prompt_denoise(logits, 0.5)
    assert kept_classes(logits, 0.5).tolist() == [[False, True, False]]
    assert out[0, :, 0, 0].argmax() == 1


def test_prompt_denoising_guard_when_no_class_reaches_t():
    """If no class reaches t anywhere in an image the image is left unchanged (not emptied)."""
    logits = logits_for(_probs([0.4, 0.35, 0.25], [0.3, 0.3, 0.4]))
    assert kept_classes(logits, 0.5).all()
    assert torch.equal(prompt_denoise(logits, 0.5), logits)


def test_prompt_denoising_threshold_is_inclusive():
    """A class whose max probability equals t exactly survives ("reaches t"); just above it, not."""
    logits = torch.randn(1, 4, 3, 3) * 0.02
    top = (SOFTMAX_SCALE * logits).softmax(dim=1).flatten(2).amax(dim=2)[0]
    c = int(top.argmax())
    t = float(top[c])
    assert kept_classes(logits, t)[0, c]
    assert (kept_classes(logits, t).sum() == 1) and (kept_classes(logits, t + 1e-6).all())  # guard: none reach


# -- sliding window ---------------------------------------------------------------------------------


WINDOW_CASES = [c for c in itertools.product([16, 48, 100, 512, 517], [16, 32, 224], [8, 16, 160]) if c[2] <= c[1]]


@pytest.mark.parametrize("length,window,stride", WINDOW_CASES)
def test_window_starts_cover_every_pixel_and_end_at_the_border(length, window, stride):
    """Starts begin at 0, are increasing, step by at most ``stride``, and the last window ends exactly
    at the border (or the single window covers a short axis); every pixel is covered."""
    starts = window_starts(length, window, stride)
    assert starts[0] == 0 and starts == sorted(set(starts))
    assert all(b - a <= stride for a, b in zip(starts, starts[1:]))
    if length > window:
        assert starts[-1] + window == length
    else:
        assert starts == [0]
    covered = torch.zeros(length, dtype=torch.bool)
    for s in starts:
        covered[s : s + window] = True
    assert covered.all()


def _segmenter(clip, **cfg) -> MaskCLIP:
    return MaskCLIP(clip, ["cat", "dog", "tree"], MaskCLIPConfig(templates="simple", **cfg))


@pytest.mark.parametrize("window", [48, 64])
def test_window_covering_the_whole_image_equals_whole_image_inference(window):
    """A window as large as (or larger than) the whole image gives exactly whole-image inference."""
    clip = make_tiny_clip("vit")
    images = torch.randn(1, 3, 48, 40)
    whole = _segmenter(clip)
    slid = _segmenter(clip, window=window, stride=16)
    f0, k0 = whole.encode(images)
    f1, k1 = slid.encode(images)
    assert rel_err(f1, f0) < 1e-6 and rel_err(k1, k0) < 1e-6
    assert rel_err(slid.scores(images), whole.scores(images)) < 1e-5


def test_sliding_window_averages_overlapping_windows():
    """Non-square image, window 32 / stride 16 along the width: each cell is the mean of the
    L2-normalised features (and the raw keys) of the windows covering it."""
    clip = make_tiny_clip("vit")
    visual = clip.model.visual
    images = torch.randn(1, 3, 32, 64)  # 4 x 8 cells; windows start at x = 0, 16, 32 px
    feats, keys = _segmenter(clip, window=32, stride=16).encode(images)
    assert feats.shape == (1, 32, 4, 8) and keys.shape == (1, 48, 4, 8)
    f_sum = torch.zeros(1, 32, 4, 8)
    k_sum = torch.zeros(1, 48, 4, 8)
    count = torch.zeros(1, 1, 4, 8)
    for x0 in (0, 16, 32):
        f, k = dense_features(visual, images[:, :, :, x0 : x0 + 32])
        f_sum[..., x0 // 8 : x0 // 8 + 4] += F.normalize(f, dim=1)
        k_sum[..., x0 // 8 : x0 // 8 + 4] += k
        count[..., x0 // 8 : x0 // 8 + 4] += 1
    assert count.min() == 1 and count.max() == 2
    assert rel_err(feats, f_sum / count) < 1e-5
    assert rel_err(keys, k_sum / count) < 1e-5


def test_sliding_window_on_a_512ish_non_square_input():
    """A 512 x 384 input with window 128 / stride 96 gives finite, per-location distributions at the
    full 64 x 48 cell grid (the last windows are pushed back to the border)."""
    clip = make_tiny_clip("vit")
    seg = _segmenter(clip, window=128, stride=96)
    probs = seg.scores(torch.randn(1, 3, 384, 512))
    assert probs.shape == (1, 3, 48, 64)
    assert torch.isfinite(probs).all()
    assert torch.allclose(probs.sum(dim=1), torch.ones(1, 48, 64), atol=1e-4)


@pytest.mark.parametrize("cfg", [{"window": 16, "stride": 32}, {"window": 12}, {"window": 32, "stride": 12}, {"window": 0}])
def test_bad_window_settings_are_refused(cfg):
    """A stride larger than the window (uncovered pixels), zero sizes, or sizes that are not
    multiples of the patch size raise MaskCLIPError up front."""
    with pytest.raises(MaskCLIPError):
        _segmenter(make_tiny_clip("vit"), **cfg)


# -- upsampling -------------------------------------------------------------------------------------


def test_upsample_argmax_chunked_equals_full_bilinear_argmax():
    """Chunked running max = bilinear upsampling of all classes then max/argmax; confidence in [0, 1]."""
    torch.manual_seed(0)
    probs = torch.randn(7, 5, 6).softmax(dim=0)
    labels, conf = upsample_argmax(probs, (23, 37), chunk=3)
    up = F.interpolate(probs[None], size=(23, 37), mode="bilinear", align_corners=False)[0]
    assert labels.shape == (23, 37) and conf.shape == (23, 37)
    assert torch.equal(labels, up.argmax(dim=0))
    assert torch.allclose(conf, up.amax(dim=0))
    assert conf.min() >= 0 and conf.max() <= 1


def test_regrouped_key_smoothing_equals_the_whole_similarity():
    """k^T (k p^T), which never forms the (hw x hw) similarity, gives the whole matrix's result within 1e-6."""
    torch.manual_seed(0)
    keys, logits = torch.randn(2, 16, 9, 13), torch.randn(2, 5, 9, 13) * 0.05
    want = smooth((SOFTMAX_SCALE * logits).softmax(dim=1), key_similarity(keys))
    assert rel_err(key_smooth(logits, keys), want) < 1e-6
    assert (key_smooth(logits, keys) - want).abs().max() < 1e-6


def test_regrouped_key_smoothing_equals_the_row_block_formula_on_vit_keys():
    """The regrouped product against the former row-block formula (similarity rows times p, written out
    here), on a random-weight ViT's keys (negative cosines included) and a 512-px-sized grid."""
    clip = make_tiny_clip("vit")
    torch.manual_seed(1)
    _, keys = dense_features(clip.model.visual, torch.randn(1, 3, 256, 384))
    logits = torch.randn(1, 9, *keys.shape[-2:]) * 0.05
    probs = (SOFTMAX_SCALE * logits).softmax(dim=1).flatten(2)
    k = F.normalize(keys.flatten(2), dim=1)
    n, rows = k.shape[2], 100
    raw = torch.cat([(k[:, :, i : i + rows].transpose(1, 2) @ k) @ probs.transpose(1, 2) for i in range(0, n, rows)], dim=1)
    raw = raw.transpose(1, 2).clamp_min(0)
    total = raw.sum(dim=1, keepdim=True)
    want = torch.where(total > 0, raw / total.masked_fill(total <= 0, 1), probs).reshape(logits.shape)
    assert rel_err(key_smooth(logits, keys), want) < 1e-5


def test_key_smoothing_memory_is_bounded_on_a_large_grid():
    """On a 128x128 grid the whole similarity would be 1 GB of float32; key smoothing stays far below."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import resource, torch
        from maskclip_cli.engine.key_smoothing import key_smooth
        torch.set_num_threads(1)
        keys, logits = torch.randn(1, 8, 128, 128), torch.randn(1, 3, 128, 128)
        key_smooth(torch.randn(1, 3, 4, 4), torch.randn(1, 8, 4, 4))  # warm up the allocator
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out = key_smooth(logits, keys)
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
    """)
    grown_mb = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()[-1])
    assert grown_mb < 300, f"key smoothing grew the peak memory by {grown_mb} MB"
