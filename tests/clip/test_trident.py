"""Trident's features against the authors' formula written out here (YuHengsss/Trident
``open_clip/transformer.py`` ``guidance_attn``/``get_sam_sim``, ``trident.py`` ``get_sam_feat``
and ``get_windowed_imgs``), on random weights: a small CLIP ViT/16, DINO ViT-B/16 and SAM ViT-B
(timm, ``pretrained=False``, cut to 3 blocks and a 256-px input for speed)."""

from __future__ import annotations

import open_clip
import pytest
import timm
import torch
import torch.nn.functional as F
from test_proxyclip import TEXT, reference as proxyclip_reference, rel_err
from timm.models.vision_transformer_sam import get_decomposed_rel_pos_bias

from maskclip_cli.clip.dense_vit import vit_dense
from maskclip_cli.clip.proxy.backbone import LoadedProxy
from maskclip_cli.clip.proxy.sam_guidance import sam_guidance
from maskclip_cli.clip.proxy.trident import crop_origins, trident_features, trident_size
from maskclip_cli.core.errors import ParameterError
from maskclip_cli.core.record import WeightsSource
from maskclip_cli.engine.sliding_window import window_starts

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CLIP_NORM = (open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD)


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


def normalise(x: torch.Tensor, mean_std) -> torch.Tensor:
    mean, std = (torch.tensor(t, dtype=x.dtype).view(1, 3, 1, 1) for t in mean_std)
    return (x - mean) / std


def reference_sam(sam: torch.nn.Module, image: torch.Tensor, cos_fac: float, refine_neg_cos: bool):
    """get_sam_feat + get_sam_sim: SAM's whole last-block attention, cropped to the valid cells, then the rule."""
    side = sam.patch_embed.img_size[0]
    h, w = image.shape[-2:]
    scale = side * 1.0 / max(h, w)
    newh, neww = int(h * scale + 0.5), int(w * scale + 0.5)
    x = normalise(F.interpolate(image, (newh, neww), mode="bilinear", align_corners=False, antialias=True), IMAGENET)
    x = F.pad(x, (0, side - neww, 0, side - newh))
    feats = sam.forward_intermediates(x, indices=[len(sam.blocks) - 2], intermediates_only=True)[0]  # NCHW into the last block
    B, C, H, W = feats.shape
    attn_layer = sam.blocks[-1].attn
    heads = attn_layer.num_heads
    qkv = attn_layer.qkv(sam.blocks[-1].norm1(feats.permute(0, 2, 3, 1))).reshape(B, H * W, 3, heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.reshape(3, B * heads, H * W, -1).unbind(0)
    attn = (q * attn_layer.scale) @ k.transpose(-2, -1) + get_decomposed_rel_pos_bias(q, attn_layer.rel_pos_h, attn_layer.rel_pos_w, (H, W), (H, W))
    attn = attn.softmax(dim=-1)
    vh, vw = newh // 16, neww // 16
    sam_attn = attn.view(1, heads, H, W, H, W)[:, :, :vh, :vw, :vh, :vw].flatten(2, 3).flatten(3, 4)
    sam_v = v.view(1, heads, H, W, -1)[:, :, :vh, :vw, :].flatten(2, 3)
    sam_v = F.normalize(sam_v, dim=-1)
    sam_sim = torch.einsum("bhmc,bhnc->bhmn", sam_v, sam_v)
    sim_thresh = cos_fac * sam_sim.mean(dim=1, keepdim=True).mean(dim=-1, keepdim=True)
    if not refine_neg_cos:
        sim_thresh = torch.where(sim_thresh < 0.0, 0.6, sim_thresh)
    sim_thresh = torch.where(sim_thresh > 0.9, 0.9, sim_thresh)
    refined = torch.where(sam_sim > sim_thresh, sam_attn, torch.zeros_like(sam_attn)).mean(dim=1)
    return (refined / refined.sum(dim=-1, keepdim=True))[0], (vh, vw), sim_thresh


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


def authors_windows(h_img: int, w_img: int, crop: int, stride: int) -> list[tuple[int, int]]:
    """get_windowed_imgs' crop corners."""
    h_grids = max(h_img - crop + stride - 1, 0) // stride + 1
    w_grids = max(w_img - crop + stride - 1, 0) // stride + 1
    out = []
    for h_idx in range(h_grids):
        for w_idx in range(w_grids):
            y2, x2 = min(h_idx * stride + crop, h_img), min(w_idx * stride + crop, w_img)
            out.append((max(y2 - crop, 0), max(x2 - crop, 0)))
    return out


@torch.no_grad()
def test_features_match_the_authors_formula(models):
    visual, dino, sam = models
    image = pixels(1)
    crop, stride = 112, 64
    feats, keys = trident_features(visual, *CLIP_NORM, dino, sam, image, crop=crop, stride=stride, crop_batch=3, row_chunk=50)
    # preprocess_image: long side 280 -> 288, short side 200 * 288 / 280 = 205 -> 208
    size = trident_size(200, 280, 16, crop)
    assert size == (208, 288)
    resized = F.interpolate(image, size, mode="bilinear", align_corners=False)
    corners = authors_windows(*size, crop, stride)
    assert len(corners) == 3 * 4
    dst_v = torch.zeros(1, 128, 13, 18, dtype=torch.float64)
    dst_k = torch.zeros(1, 128, 13, 18, dtype=torch.float64)
    count = torch.zeros(1, 1, 13, 18, dtype=torch.float64)
    tiles = torch.cat([resized[..., y1 : y1 + crop, x1 : x1 + crop] for y1, x1 in corners])
    # the authors' encode_image runs all crops as one batch: mean(S) over all of them
    raw_vs = proxyclip_reference(visual, dino.model, normalise(tiles, CLIP_NORM), normalise(tiles, IMAGENET), 1.2, 3.0, projected=False, batch_mean=True)
    for (y1, x1), raw_v, tile in zip(corners, raw_vs, tiles):
        dst_v[0, :, y1 // 16 : y1 // 16 + 7, x1 // 16 : x1 // 16 + 7] += raw_v
        dst_k[0, :, y1 // 16 : y1 // 16 + 7, x1 // 16 : x1 // 16 + 7] += vit_dense(visual, normalise(tile[None], CLIP_NORM), method="sclip")[1][0]
        count[0, :, y1 // 16 : y1 // 16 + 7, x1 // 16 : x1 // 16 + 7] += 1
    dst_v = dst_v / count
    weights, (vh, vw), _ = reference_sam(sam.model, image, 1.2, True)
    ref_keys = F.interpolate(dst_k / count, size=(vh, vw), mode="bilinear", align_corners=False)
    dst_v = F.interpolate(dst_v, size=(vh, vw), mode="bilinear", align_corners=False)
    heads = 4
    dst_v = dst_v.view(1, heads, 32, -1).permute(0, 1, 3, 2)  # per head, as the authors
    out = torch.matmul(weights[None, None], dst_v).permute(2, 0, 1, 3).flatten(2)[:, 0]  # (N, W)
    ref = (visual.ln_post(out) @ visual.proj).T.reshape(1, 64, vh, vw)
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
def test_crop_origins_are_the_pipelines_sliding_windows(length):
    assert crop_origins(length, 336, 224) == window_starts(length, 336, 224)
    assert crop_origins(length, 336, 112) == window_starts(length, 336, 112)
