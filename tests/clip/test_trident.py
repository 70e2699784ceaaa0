"""Trident's features against the authors' formula written out here (YuHengsss/Trident
``open_clip/transformer.py`` ``guidance_attn``/``get_sam_sim``, ``trident.py`` ``get_sam_feat``
and ``get_windowed_imgs``), on random weights: a small CLIP ViT/16, DINO ViT-B/16 and SAM ViT-B
(timm, ``pretrained=False``, cut to 3 blocks and a 256-px input for speed)."""

from __future__ import annotations

import open_clip
import pytest
import timm
import torch
from proxy_reference import CLIP_NORM, IMAGENET, authors_windows, reference_sam, rel_err, trident_reference
from test_proxyclip import TEXT

from maskclip_cli.clip.proxy.backbone import LoadedProxy
from maskclip_cli.clip.proxy.sam_guidance import sam_guidance
from maskclip_cli.clip.proxy.trident import trident_features, trident_size
from maskclip_cli.core.errors import ParameterError
from maskclip_cli.core.record import WeightsSource
from maskclip_cli.clip.preprocess import window_starts

def loaded(model: torch.nn.Module, name: str) -> LoadedProxy:
    return LoadedProxy(model.eval().double(), name, WeightsSource("random"), *IMAGENET)


@pytest.fixture(scope="module")
def models() -> tuple[torch.nn.Module, LoadedProxy, LoadedProxy]:
    torch.manual_seed(0)
    clip = open_clip.CLIP(embed_dim=64, vision_cfg={"image_size": 224, "patch_size": 16, "width": 128, "layers": 3, "head_width": 32}, text_cfg=TEXT)
    dino = timm.create_model("vit_base_patch16_224.dino", pretrained=False, dynamic_img_size=True, depth=3)
    # block 1 global too: our row-blocked global blocks against timm's own forward
    sam = timm.create_model("samvit_base_patch16", pretrained=False, img_size=256, depth=3, global_attn_indexes=[1, 2])
    with torch.no_grad():  # SAM's relative positions start at zero: give them values so they count
        for blk in sam.blocks:
            for p in (blk.attn.rel_pos_h, blk.attn.rel_pos_w):
                p.normal_(std=0.5)
    return clip.visual.eval().double(), loaded(dino, "vit_base_patch16_224.dino"), loaded(sam, "samvit_base_patch16")


def pixels(seed: int, size: tuple[int, int] = (200, 280)) -> torch.Tensor:
    return torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("cos_fac,refine_neg_cos", [(1.2, True), (4.0, False), (-1.0, False)])
@torch.no_grad()
def test_sam_guidance_in_row_blocks_matches_the_authors_rule(models, cos_fac, refine_neg_cos):
    """Every block size (7 rows, 64, all at once) gives the authors' weights; the three settings
    reach each branch of the threshold (as computed, clamped at 0.9, negative replaced by 0.6)."""
    _, _, sam = models
    image = pixels(0)
    ref, grid, thresh = reference_sam(sam.model, image, cos_fac, refine_neg_cos)
    assert grid == (11, 16)
    branch = {1.2: (thresh < 0.9).all(), 4.0: (thresh == 0.9).any() & (thresh < 0.9).any(), -1.0: (thresh == 0.6).all()}[cos_fac]
    assert branch
    for chunk in (7, 64, 10_000):
        guide = sam_guidance(sam, image, cos_fac, refine_neg_cos, row_chunk=chunk)
        assert guide.grid == grid and rel_err(guide.weights, ref) < 1e-10
    assert 0 < (ref > 0).float().mean() < 1 and torch.allclose(ref.sum(-1), torch.ones(176, dtype=ref.dtype))


@torch.no_grad()
def test_features_match_the_authors_formula(models):
    visual, dino, sam = models
    image = pixels(1)
    crop, stride = 112, 64
    feats, keys = trident_features(visual, *CLIP_NORM, dino, sam, image, crop=crop, stride=stride, crop_batch=3, row_chunk=50)
    # preprocess_image: long side 280 -> 288, short side 200 * 288 / 280 = 205 -> 208
    size = trident_size(200, 280, 16, crop)
    assert size == (208, 288)
    ref, ref_keys = trident_reference(visual, dino.model, sam.model, image, size, crop, stride)
    assert len(authors_windows(*size, crop, stride)) == 3 * 4
    assert feats.shape == ref.shape == (1, 64, 11, 16) and keys.shape == (1, 128, 11, 16)
    assert ref.abs().mean() > 1e-3 and rel_err(feats, ref) < 1e-5
    assert rel_err(keys, ref_keys) < 1e-10  # CLIP's last-block keys, spliced and resized like the features


def authors_preprocess_size(h: int, w: int, stride: int = 16, slide_crop: int = 336) -> tuple[int, int]:
    """seg_utils/utils.py preprocess_image, on sizes."""
    longer_side = max(h, w)
    if h % stride == 0 and w % stride == 0:
        return h, w
    dst_longer = (longer_side // stride + 1) * stride if longer_side % stride != 0 else longer_side
    new_h, new_w = int(h * dst_longer / longer_side), int(w * dst_longer / longer_side)
    if new_h % stride != 0:
        new_h = (new_h // stride + 1) * stride
    if new_w % stride != 0:
        new_w = (new_w // stride + 1) * stride
    return max(new_h, slide_crop), max(new_w, slide_crop)


@pytest.mark.parametrize("h,w", [(448, 597), (597, 448), (448, 448), (200, 280), (336, 500), (1000, 335), (64, 64)])
def test_trident_size_is_the_authors_preprocess(h, w):
    assert trident_size(h, w, 16, 336) == authors_preprocess_size(h, w)


def test_windows_off_the_patch_grid_are_refused(models):
    visual, dino, sam = models
    with pytest.raises(ParameterError) as info:
        trident_features(visual, *CLIP_NORM, dino, sam, pixels(2), crop=120, stride=64)
    assert info.value.as_flags() == "--crop and --stride must be multiples of the proxy's patch size 16 (got 120, 64)."


@pytest.mark.parametrize("length", [100, 336, 337, 448, 560, 597, 1000])
def test_the_pipelines_sliding_windows_are_the_authors_crops(length):
    for stride in (224, 112):
        assert sorted({top for top, _ in authors_windows(length, 336, 336, stride)}) == window_starts(length, 336, stride)
