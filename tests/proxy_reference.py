"""The authors' formulas written out independently of the package (mc-lan/ProxyCLIP ``custom_attn``;
YuHengsss/Trident ``guidance_attn``, ``get_sam_sim``, ``get_sam_feat``, ``get_windowed_imgs``): the
references of tests/clip/test_proxyclip.py, test_trident.py and the CLI tests of both methods."""

from __future__ import annotations

import math

import open_clip
import torch
import torch.nn.functional as F
from timm.models.vision_transformer_sam import get_decomposed_rel_pos_bias

from maskclip_cli.clip.dense import dense_features

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CLIP_NORM = (open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def authors_pos_embed(visual, h: int, w: int) -> torch.Tensor:
    """The authors' ``interpolate_pos_encoding``: bicubic by the scale factor (grid + 0.1) / grid0."""
    pos = visual.positional_embedding
    n = pos.shape[0] - 1
    side = int(math.sqrt(n))
    patch = F.interpolate(pos[1:].reshape(1, side, side, -1).permute(0, 3, 1, 2),
                          scale_factor=((h + 0.1) / side, (w + 0.1) / side), mode="bicubic")
    return torch.cat([pos[:1], patch.permute(0, 2, 3, 1).reshape(h * w, -1)])


def reference(visual, proxy, clip_img: torch.Tensor, proxy_img: torch.Tensor, beta: float, gamma: float,
              projected: bool = True, batch_mean: bool = False) -> torch.Tensor:
    """One image at a time, one head at a time, in the authors' order; ``projected=False`` stops
    before ``ln_post`` (what Trident splices); ``batch_mean``: mean(S) over the batch, as the
    authors' ``torch.mean(similarity)`` (Trident batches the crops of one image)."""
    sims = []
    for b in range(clip_img.shape[0]):
        q_k = proxy.forward_intermediates(proxy_img[b : b + 1], indices=1, norm=True, intermediates_only=True)[-1][0].flatten(1)
        q_k = q_k / q_k.norm(dim=0, keepdim=True)
        sims.append(torch.einsum("cm,cn->mn", q_k, q_k))
    outs = []
    for b in range(clip_img.shape[0]):
        x = visual.conv1(clip_img[b : b + 1])
        h, w = x.shape[-2:]
        x = x.reshape(1, x.shape[1], -1).permute(0, 2, 1)
        x = torch.cat([visual.class_embedding.reshape(1, 1, -1), x], dim=1) + authors_pos_embed(visual, h, w)
        x = visual.ln_pre(x)
        for blk in visual.transformer.resblocks[:-1]:
            x = blk(x)
        blk = visual.transformer.resblocks[-1]
        attn = blk.attn
        width, heads = x.shape[-1], attn.num_heads
        d = width // heads
        v = F.linear(blk.ln_1(x), attn.in_proj_weight[2 * width :], attn.in_proj_bias[2 * width :])[0, 1:]  # (hw, W)
        # proxy: last layer's patch tokens after the final norm, through timm's other path
        hh, ww = proxy_img.shape[-2] // proxy.patch_embed.patch_size[0], proxy_img.shape[-1] // proxy.patch_embed.patch_size[1]
        sim = sims[b]
        sim = (sim - (torch.stack(sims).mean() if batch_mean else sim.mean()) * beta) * gamma
        sim[sim < 0] = float("-inf")
        a = sim.softmax(dim=-1)
        head_outs = []
        for i in range(heads):
            vi = v[:, i * d : (i + 1) * d].T.reshape(1, d, h, w)
            vi = F.interpolate(vi, size=(hh, ww), mode="bilinear", align_corners=False).reshape(d, hh * ww).T
            head_outs.append(a @ vi)
        y = F.linear(torch.cat(head_outs, dim=1), attn.out_proj.weight, attn.out_proj.bias)
        if projected:
            y = visual.ln_post(y) @ visual.proj
        outs.append(y.T.reshape(-1, hh, ww))
    return torch.stack(outs)


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


def trident_reference(visual, dino, sam, image: torch.Tensor, size: tuple[int, int], crop: int, stride: int,
                      beta: float = 1.2, gamma: float = 3.0, cos_fac: float = 1.2, refine_neg_cos: bool = True,
                      clip_norm=CLIP_NORM) -> tuple[torch.Tensor, torch.Tensor]:
    """Trident's features and keys (get_trident_seg) for one image of pixels (1, 3, H, W) in [0, 1]
    resized to ``size`` (the authors' preprocess_image), with the authors' crops, DINO/16 proxy and SAM."""
    resized = F.interpolate(image, size, mode="bilinear", align_corners=False)
    corners = authors_windows(*size, crop, stride)
    width, heads, p = visual.transformer.width, visual.transformer.resblocks[-1].attn.num_heads, 16
    cells, grid = crop // p, (size[0] // p, size[1] // p)
    dst_v = torch.zeros(1, width, *grid, dtype=torch.float64)
    dst_k = torch.zeros(1, width, *grid, dtype=torch.float64)
    count = torch.zeros(1, 1, *grid, dtype=torch.float64)
    tiles = torch.cat([resized[..., y1 : y1 + crop, x1 : x1 + crop] for y1, x1 in corners])
    # the authors' encode_image runs all crops as one batch: mean(S) over all of them
    raw_vs = reference(visual, dino, normalise(tiles, clip_norm), normalise(tiles, IMAGENET), beta, gamma, projected=False, batch_mean=True)
    for (y1, x1), raw_v, tile in zip(corners, raw_vs, tiles):
        at = (0, slice(None), slice(y1 // p, y1 // p + cells), slice(x1 // p, x1 // p + cells))
        dst_v[at] += raw_v
        dst_k[at] += dense_features(visual, normalise(tile[None], clip_norm), method="sclip")[1][0]
        count[at] += 1
    dst_v = dst_v / count
    weights, (vh, vw), _ = reference_sam(sam, image, cos_fac, refine_neg_cos)
    ref_keys = F.interpolate(dst_k / count, size=(vh, vw), mode="bilinear", align_corners=False)
    dst_v = F.interpolate(dst_v, size=(vh, vw), mode="bilinear", align_corners=False)
    dst_v = dst_v.view(1, heads, width // heads, -1).permute(0, 1, 3, 2)  # per head, as the authors
    out = torch.matmul(weights[None, None], dst_v).permute(2, 0, 1, 3).flatten(2)[:, 0]  # (N, W)
    ref = (visual.ln_post(out) @ visual.proj).T.reshape(1, -1, vh, vw)
    return ref, ref_keys
