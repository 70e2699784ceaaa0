"""``--protocol paper-exact``: the authors' MaskCLIP code's differences, each against its formula."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from conftest import make_tiny_clip
from PIL import Image

from maskclip_cli.core.constants import IMAGENET_MEAN, IMAGENET_STD
from maskclip_cli.engine.authors_code import authors_key_smooth, authors_port
from maskclip_cli.engine.maskclip import MaskCLIP, MaskCLIPConfig


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_vit_port_uses_gelu_and_layernorm_eps_1e6_on_a_copy():
    visual = make_tiny_clip("vit").model.visual
    visual.transformer.resblocks[0].mlp.gelu = torch.nn.Identity()  # a marker: the original must keep it
    port = authors_port(visual)
    x = torch.randn(2, 5, visual.transformer.width)
    mlp = port.transformer.resblocks[0].mlp
    assert rel_err(mlp(x), F.linear(F.gelu(F.linear(x, mlp.c_fc.weight, mlp.c_fc.bias)), mlp.c_proj.weight, mlp.c_proj.bias)) < 1e-6
    for ln in (port.ln_pre, port.ln_post, port.transformer.resblocks[-1].ln_1, port.transformer.resblocks[-1].ln_2):
        assert rel_err(ln(x), F.layer_norm(x, (x.shape[-1],), ln.weight, ln.bias, eps=1e-6)) < 1e-6
    assert isinstance(visual.transformer.resblocks[0].mlp.gelu, torch.nn.Identity) and visual.ln_post.eps == 1e-5


def test_resnet_port_drops_the_pool_positional_embedding():
    visual = make_tiny_clip("resnet").model.visual.eval()
    port = authors_port(visual)
    images = torch.randn(1, 3, 64, 96)
    from maskclip_cli.clip.dense import dense_features

    feats, _ = dense_features(port, images)
    x = visual.layer4(visual.layer3(visual.layer2(visual.layer1(visual.stem(images)))))
    pool = visual.attnpool
    conv = lambda t, lin: F.conv2d(t, lin.weight[:, :, None, None], lin.bias)  # noqa: E731
    assert rel_err(feats, conv(conv(x, pool.v_proj), pool.c_proj)) < 1e-5
    assert pool.positional_embedding.abs().sum() > 0


def test_key_smoothing_as_the_authors_code():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 3, 5) * 0.1
    logits[0, 1, 0, 0] = 5.0  # a saturated location: its softmax(100x) is exactly 1 and is not smoothed
    keys = torch.randn(2, 7, 3, 5)
    out = authors_key_smooth(logits, keys)
    p = (100 * logits).softmax(1).flatten(2).transpose(1, 2)  # (B, HW, C)
    k = F.normalize(keys.flatten(2).transpose(1, 2), p=2)  # (B, HW, C): default dim 1 = locations
    w = k @ k.transpose(1, 2)
    sel = p.max(-1)[0] < 1.0
    ref = p.clone()
    ref[sel] = (w @ p)[sel]
    assert not sel[0, 0] and sel.sum() > 20
    assert rel_err(out.flatten(2).transpose(1, 2), ref) < 1e-6


def test_authors_code_segmenter_uses_imagenet_statistics_and_upsampled_logits():
    clip = make_tiny_clip("vit")
    mc = MaskCLIP(clip, ["cat", "dog"], MaskCLIPConfig(templates="simple", authors_code=True, upsample_logits=True,
                                                      key_smoothing=False, short_side=32))
    image = Image.fromarray(np.full((32, 32, 3), 128, dtype=np.uint8))
    x = mc.prepare(image)
    expected = (128 / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(x[:, 0, 0], expected, atol=1e-4)
    pred = mc.label_image(Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)))
    assert pred.labels.shape == (20, 30)
    assert mc.visual is not clip.model.visual and mc.record().inference["authors_code"]
