"""Trident's dense features (Shi et al., 2024; YuHengsss/Trident, Apache-2.0: ``trident.py``
``get_trident_seg``/``get_windowed_imgs``, ``open_clip/transformer.py`` ``custom_attn``/
``guidance_attn``, ``seg_utils/utils.py`` ``preprocess_image``).

1. The image is resized so both sides are multiples of the proxy's patch (16) and at least a crop
   (``preprocess_image``); ProxyCLIP's last block (:mod:`.proxyclip`, with DINO ViT-B/16) runs on
   sliding crops (336 px, stride 224 in the authors' base config), and each crop's
   ``out_proj(A v)``, before ``ln_post``, is spliced into one full-image map, overlaps averaged.
   mean(S) is, as theirs, over all crops of the image (they run them as one batch).
2. SAM ViT-B's similarity-gated last-block attention (:mod:`.sam_guidance`).
3. The spliced map is resized bilinearly to SAM's grid, re-aggregated by that attention, then goes
   through ``ln_post`` and the projection. Output: SAM's valid grid (stride = long side / 64).

SAM's optional prompt refinement is not part of this. The proxy comes from timm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.transformer import VisionTransformer

from ...core.errors import ParameterError
from ..preprocess import window_starts
from .backbone import LoadedProxy, patch_tokens
from .proxyclip import BETA, GAMMA, project, proxy_similarity, proxyclip_tokens
from .sam_guidance import COS_FAC, ROW_CHUNK, sam_guidance

CROP = 336
STRIDE = 224


def trident_size(h: int, w: int, patch: int, crop: int = CROP) -> tuple[int, int]:
    """The authors' ``preprocess_image``: long side up to a multiple of ``patch``, the short side
    scaled with it and rounded up to one, both at least ``crop``; unchanged if both are multiples."""
    if h % patch == 0 and w % patch == 0:
        return h, w
    up = lambda n: -(-n // patch) * patch  # noqa: E731
    longer = max(h, w)
    h2, w2 = int(h * up(longer) / longer), int(w * up(longer) / longer)
    return max(up(h2), crop), max(up(w2), crop)


def splice(crops: torch.Tensor, origins: list[tuple[int, int]], size: tuple[int, int]) -> torch.Tensor:
    """Crop maps (n, C, h, w) placed at ``origins`` (cells) on a ``size`` grid, overlaps averaged: (1, C, H, W)."""
    total = crops.new_zeros(1, crops.shape[1], *size)
    count = crops.new_zeros(1, 1, *size)
    h, w = crops.shape[-2:]
    for crop, (top, left) in zip(crops, origins):
        total[0, :, top : top + h, left : left + w] += crop
        count[0, :, top : top + h, left : left + w] += 1
    return total / count


def trident_features(
    visual: VisionTransformer, clip_mean: tuple[float, ...], clip_std: tuple[float, ...], proxy: LoadedProxy, sam: LoadedProxy,
    pixels: torch.Tensor, crop: int = CROP, stride: int = STRIDE, beta: float = BETA, gamma: float = GAMMA,
    cos_fac: float = COS_FAC, refine_neg_cos: bool = True, crop_batch: int = 4, row_chunk: int = ROW_CHUNK,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features (1, D, h, w), keys (1, W, h, w))`` on SAM's valid grid for one image of RGB
    pixels in [0, 1] (1, 3, H, W). ``clip_mean``/``clip_std`` normalise CLIP's input; the proxy
    (DINO ViT-B/16 in the authors' code) and SAM normalise their own. Keys are CLIP's last-block
    keys, spliced and resized like the features, for key smoothing."""
    patch = proxy.patch_size
    if crop % patch or stride % patch:
        raise ParameterError(f"{{}} and {{}} must be multiples of the proxy's patch size {patch} (got {crop}, {stride}).", "crop", "stride")
    size = trident_size(*pixels.shape[-2:], patch, crop)
    image = pixels if size == tuple(pixels.shape[-2:]) else F.interpolate(pixels, size=size, mode="bilinear", align_corners=False)
    clip_mean_t = torch.tensor(clip_mean, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    clip_std_t = torch.tensor(clip_std, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    boxes = [(top, left) for top in window_starts(size[0], crop, stride) for left in window_starts(size[1], crop, stride)]
    batches = [torch.cat([image[..., y : y + crop, x : x + crop] for y, x in boxes[i : i + crop_batch]]) for i in range(0, len(boxes), crop_batch)]
    tokens = [patch_tokens(proxy.model, proxy.normalise(tiles)) for tiles in batches]
    # the authors run all crops of an image as one batch, so mean(S) is over the image's crops
    mean = torch.cat([proxy_similarity(t).mean(dim=(1, 2)) for t in tokens]).mean()
    outs, keys = [], []
    for tiles, tok in zip(batches, tokens):
        out, key = proxyclip_tokens(visual, tok, (tiles - clip_mean_t) / clip_std_t, beta, gamma, mean)
        outs.append(out.transpose(1, 2).reshape(out.shape[0], -1, *tok.shape[-2:]))
        keys.append(key)
    origins = [(t // patch, l // patch) for t, l in boxes]
    cells = (size[0] // patch, size[1] // patch)
    guide = sam_guidance(sam, pixels, cos_fac, refine_neg_cos, row_chunk)
    resize = lambda m: F.interpolate(splice(torch.cat(m), origins, cells), size=guide.grid, mode="bilinear", align_corners=False)  # noqa: E731
    tokens = guide.weights.to(image.dtype) @ resize(outs).flatten(2)[0].T  # (N, W)
    return project(visual, tokens[None], guide.grid), resize(keys)
