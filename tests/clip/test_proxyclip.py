"""ProxyCLIP's features against the authors' formula written out here (mc-lan/ProxyCLIP
``open_clip/transformer.py`` ``custom_attn``), on random weights, at sizes where CLIP's grid
(patch 16) and the proxy's (DINO patch 8, DINOv2-with-registers patch 14) differ."""

from __future__ import annotations


import open_clip
import pytest
import timm
import torch
import torch.nn.functional as F
from proxy_reference import reference, rel_err

from maskclip_cli.clip.dense import dense_features
from maskclip_cli.clip.proxy.proxyclip import proxy_attention, proxyclip_features

TEXT = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
PROXIES = {"dino": "vit_small_patch8_224.dino", "dinov2_reg": "vit_small_patch14_reg4_dinov2.lvd142m"}
SIZE = (112, 224)  # CLIP 7x14; DINO/8 14x28; DINOv2/14 8x16


@pytest.fixture(scope="module")
def clip_visual() -> torch.nn.Module:
    """A small open_clip ViT/16 (3 blocks, 4 heads), float64 so the comparison is exact to 1e-12."""
    torch.manual_seed(0)
    model = open_clip.CLIP(embed_dim=64, vision_cfg={"image_size": 224, "patch_size": 16, "width": 128, "layers": 3, "head_width": 32}, text_cfg=TEXT)
    return model.visual.eval().double()


@pytest.fixture(scope="module", params=list(PROXIES))
def proxy(request) -> torch.nn.Module:
    """The named timm ViT (its patch size, class/register tokens, final norm) cut to 3 blocks for speed."""
    torch.manual_seed(1)
    return timm.create_model(PROXIES[request.param], pretrained=False, dynamic_img_size=True, depth=3).eval().double()


def images(seed: int, n: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    pixels = torch.rand(n, 3, *SIZE, generator=g, dtype=torch.float64)
    clip_mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    clip_std = torch.tensor(open_clip.OPENAI_DATASET_STD, dtype=torch.float64).view(1, 3, 1, 1)
    im_mean = torch.tensor((0.485, 0.456, 0.406), dtype=torch.float64).view(1, 3, 1, 1)
    im_std = torch.tensor((0.229, 0.224, 0.225), dtype=torch.float64).view(1, 3, 1, 1)
    return (pixels - clip_mean) / clip_std, (pixels - im_mean) / im_std


@pytest.mark.parametrize("beta,gamma", [(1.2, 3.0), (0.9, 5.0)])
@torch.no_grad()
def test_features_match_the_authors_formula(clip_visual, proxy, beta, gamma):
    clip_img, proxy_img = images(0)
    feats, keys = proxyclip_features(clip_visual, proxy, clip_img, proxy_img, beta, gamma)
    ref = reference(clip_visual, proxy, clip_img, proxy_img, beta, gamma)
    p = proxy.patch_embed.patch_size[0]
    assert feats.shape == (2, 64, SIZE[0] // p, SIZE[1] // p) == ref.shape
    assert ref.abs().mean() > 1e-3 and rel_err(feats, ref) < 1e-5
    # the attention is neither full nor one-hot: some pairs masked, rows with several kept
    a = proxy_attention(proxy.forward_features(proxy_img)[:, proxy.num_prefix_tokens :].transpose(1, 2).reshape(2, -1, *feats.shape[-2:]), beta, gamma)
    assert (a == 0).any() and ((a > 0).sum(-1) > 1).float().mean() > 0.5
    # keys: the last block's keys (through out_proj, as the CLIP-only methods return them) resized to the proxy grid
    clip_keys = dense_features(clip_visual, clip_img, method="sclip")[1]
    ref_keys = F.interpolate(clip_keys, size=feats.shape[-2:], mode="bilinear", align_corners=False)
    assert keys.shape == (2, 128, *feats.shape[-2:]) and rel_err(keys, ref_keys) < 1e-10


@torch.no_grad()
def test_an_image_does_not_depend_on_its_batch(clip_visual, proxy):
    """The mean of S is per image (the authors' is per batch)."""
    clip_img, proxy_img = images(1, 3)
    together = proxyclip_features(clip_visual, proxy, clip_img, proxy_img)[0]
    alone = proxyclip_features(clip_visual, proxy, clip_img[1:2], proxy_img[1:2])[0]
    assert rel_err(together[1:2], alone) < 1e-12


def test_a_row_with_everything_masked_keeps_its_own_token():
    """Identical tokens (mean(S) = 1 > 1/β) mask every entry; a zero token has S = 0 in its row.
    Such rows attend to themselves alone; others are untouched; nothing is NaN."""
    g = torch.Generator().manual_seed(2)
    tokens = torch.randn(1, 8, 3, 4, generator=g, dtype=torch.float64)
    same = tokens[:, :, :1, :1].expand(1, 8, 3, 4).clone()
    a = proxy_attention(same)
    assert torch.equal(a[0], torch.eye(12, dtype=torch.float64))
    tokens[0, :, 1, 2] = 0  # cell 6
    a = proxy_attention(tokens)[0]
    assert torch.isfinite(a).all() and torch.equal(a[6], torch.eye(12, dtype=torch.float64)[6])
    f = F.normalize(tokens.flatten(2), dim=1)[0]
    s = (f.T @ f - 1.2 * (f.T @ f).mean()) * 3.0
    ref = s.masked_fill(s < 0, float("-inf")).softmax(-1)
    rows = [i for i in range(12) if i != 6]
    assert (s[rows] >= 0).any(-1).all() and rel_err(a[rows], ref[rows]) < 1e-12
