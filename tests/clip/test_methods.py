"""Each method's last block against the formula of its authors' code, written out here independently,
on random ViT-B/16 weights at 224x224 and at a non-square size."""

from __future__ import annotations

import math

import open_clip
import pytest
import torch
import torch.nn.functional as F
from conftest import make_tiny_clip

from maskclip_cli.clip.dense import dense_features
from maskclip_cli.clip.methods import CLIP_ONLY_METHODS as CLIP_ONLY, METHODS
from maskclip_cli.core.errors import MaskCLIPError


@pytest.fixture(scope="module")
def visual():
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-16").eval()
    return model.visual


def tokens_before_last(visual, images, method):
    """Patch + class tokens through every block but the last (positional embedding resized here:
    by size for MaskCLIP, by the scale factor (grid + 0.1) / 14 in the successors' code)."""
    x = visual.conv1(images)
    h, w = x.shape[-2:]
    x = x.flatten(2).transpose(1, 2)
    pos = visual.positional_embedding
    side = int(math.isqrt(pos.shape[0] - 1))
    spatial = pos[1:].T.reshape(1, -1, side, side)
    if (h, w) != (side, side):
        if method == "maskclip":
            spatial = F.interpolate(spatial, size=(h, w), mode="bicubic", align_corners=False)
        else:
            spatial = F.interpolate(spatial, scale_factor=((h + 0.1) / side, (w + 0.1) / side), mode="bicubic")
            assert spatial.shape[-2:] == (h, w)
    pos = torch.cat([pos[:1], spatial.reshape(pos.shape[1], -1).T])
    x = torch.cat([visual.class_embedding.expand(x.shape[0], 1, -1), x], dim=1) + pos
    x = visual.ln_pre(x)
    for blk in visual.transformer.resblocks[:-1]:
        x = blk(x)
    return x, (h, w)


def reference(visual, images, method):
    """The authors' last block, head by head."""
    x, (h, w) = tokens_before_last(visual, images, method)
    blk = visual.transformer.resblocks[-1]
    heads = blk.attn.num_heads
    width = x.shape[-1]
    d = width // heads
    s = 1 / math.sqrt(d)
    y = blk.ln_1(x)
    wq, wk, wv = blk.attn.in_proj_weight.split(width)
    bq, bk, bv = blk.attn.in_proj_bias.split(width)
    q, k, v = y @ wq.T + bq, y @ wk.T + bk, y @ wv.T + bv
    n = x.shape[1]
    rr, cc = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    p = torch.stack([rr.flatten(), cc.flatten()], 1).float()
    gauss = torch.zeros(n, n)
    gauss[1:, 1:] = torch.exp(-((p[:, None] - p[None]) ** 2).sum(-1) / (2 * 5.0**2))
    outs = []
    for i in range(heads):
        qi, ki, vi = (t[..., i * d : (i + 1) * d] for t in (q, k, v))
        if method == "maskclip":
            a = torch.eye(n).expand(x.shape[0], n, n)
        elif method == "sclip":
            a = torch.softmax(s * qi @ qi.transpose(1, 2), -1) + torch.softmax(s * ki @ ki.transpose(1, 2), -1)
        elif method == "clearclip":
            a = torch.softmax(s * qi @ qi.transpose(1, 2), -1)
        else:
            a = torch.softmax(s * ki @ ki.transpose(1, 2) + gauss, -1)
        outs.append(a @ vi)
    o = blk.attn.out_proj(torch.cat(outs, -1))
    if method in ("maskclip", "sclip"):
        o = x + o
        o = o + blk.mlp(blk.ln_2(o))
    feats = visual.ln_post(o[:, 1:]) @ visual.proj
    keys = blk.attn.out_proj(k)[:, 1:]
    return feats, keys, (h, w)


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("size", [(224, 224), (160, 256)])
@pytest.mark.parametrize("method", CLIP_ONLY)
def test_method_matches_formula(visual, method, size):
    torch.manual_seed(1)
    images = torch.randn(2, 3, *size)
    with torch.no_grad():
        feats, keys = dense_features(visual, images, method=method)
        ref_feats, ref_keys, (h, w) = reference(visual, images, method)
    assert feats.shape == (2, ref_feats.shape[-1], h, w) and keys.shape == (2, 768, h, w)
    assert ref_feats.norm() > 0
    assert rel_err(feats.flatten(2).transpose(1, 2), ref_feats) < 1e-5
    assert rel_err(keys.flatten(2).transpose(1, 2), ref_keys) < 1e-5


def test_methods_differ_but_share_keys(visual):
    images = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        out = {m: dense_features(visual, images, method=m) for m in CLIP_ONLY}
    for m in CLIP_ONLY[1:]:
        assert rel_err(out[m][0], out["maskclip"][0]) > 1e-3
        assert torch.equal(out[m][1], out["maskclip"][1])


def test_unknown_method_refused(visual):
    with pytest.raises(MaskCLIPError, match="Unknown method"):
        dense_features(visual, torch.zeros(1, 3, 224, 224), method="foo")


@pytest.mark.parametrize("method", METHODS[1:])
def test_resnet_is_maskclip_only(method):
    visual = make_tiny_clip("resnet").model.visual
    with pytest.raises(MaskCLIPError, match="needs a ViT"):
        dense_features(visual, torch.zeros(1, 3, 64, 64), method=method)
    assert dense_features(visual, torch.zeros(1, 3, 64, 64))[0].shape[-2:] == (2, 2)
