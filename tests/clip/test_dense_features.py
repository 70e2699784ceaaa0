"""Dense features (paper §3.3) against independent computations, on random weights.

Tiny models come from ``conftest.make_tiny_clip``; the real ViT-B-16 / RN50 architectures are built
once per module with random weights and only run at their native 224x224 input.
"""

from __future__ import annotations

import copy

import open_clip
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_CONFIGS, make_tiny_clip

from maskclip_cli.clip.dense import dense_features, output_stride
from maskclip_cli.clip.loading import from_model
from maskclip_cli.clip.pos_embed import interpolate_pos_embed
from maskclip_cli.core.errors import MaskCLIPError


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def hand_interp(pos: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize of a square (1 + n*n, D) embedding's spatial part, written out independently."""
    side = int(round((pos.shape[0] - 1) ** 0.5))
    sp = pos[1:].T.reshape(1, -1, side, side)
    sp = F.interpolate(sp, size=grid, mode="bicubic", align_corners=False)
    return torch.cat([pos[:1], sp.reshape(pos.shape[1], -1).T])


def self_only_mask(n: int) -> torch.Tensor:
    """Attention mask letting each token attend only to itself (softmax over one key is 1)."""
    mask = torch.full((n, n), float("-inf"))
    mask.fill_diagonal_(0.0)
    return mask


def vit_by_hand(visual, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MaskCLIP's ViT path through open_clip's own modules: ``_embeds``, the first blocks as is, the
    last block run with a self-only attention mask (so its attention output is exactly
    out_proj(v_i)), then ln_post and proj per token. Returns (patch feats (B, hw, D), cls feat,
    patch keys (B, hw, W)) with keys = out_proj(k) from MultiheadAttention's packed in-projection."""
    x = visual._embeds(images)
    blocks = visual.transformer.resblocks
    for blk in blocks[:-1]:
        x = blk(x)
    last = blocks[-1]
    y = last(x, attn_mask=self_only_mask(x.shape[1]))
    out = visual.ln_post(y) @ visual.proj
    _, k, _ = F.linear(last.ln_1(x), last.attn.in_proj_weight, last.attn.in_proj_bias).chunk(3, dim=-1)
    keys = last.attn.out_proj(k)
    return out[:, 1:], out[:, 0], keys[:, 1:]


def as_tokens(dense: torch.Tensor) -> torch.Tensor:
    """(B, D, h, w) -> (B, hw, D) in row-major patch order."""
    return dense.flatten(2).transpose(1, 2)


@pytest.fixture(scope="module")
def vit_b16():
    torch.manual_seed(0)
    return open_clip.create_model("ViT-B-16").eval().requires_grad_(False)


@pytest.fixture(scope="module")
def rn50():
    torch.manual_seed(0)
    return open_clip.create_model("RN50").eval().requires_grad_(False)


# -- positional embeddings ----------------------------------------------------------------------


def test_pos_embed_native_grid_is_bit_exact():
    """At the native grid the embedding comes back unchanged, bit for bit."""
    pos = torch.randn(1 + 14 * 14, 64)
    out = interpolate_pos_embed(pos, (14, 14))
    assert torch.equal(out, pos)
    assert torch.equal(interpolate_pos_embed(pos, (14, 14), (14, 14)), pos)


def test_pos_embed_non_native_is_bicubic_and_keeps_lead_token():
    """A non-native grid gives (1 + h*w, D): lead token untouched, spatial part = F.interpolate bicubic."""
    pos = torch.randn(1 + 7 * 7, 16)
    out = interpolate_pos_embed(pos, (5, 11))
    assert out.shape == (1 + 5 * 11, 16)
    assert torch.equal(out[0], pos[0])
    assert rel_err(out, hand_interp(pos, (5, 11))) < 1e-6
    assert rel_err(out[1:], F.interpolate(pos[1:].T.reshape(1, 16, 7, 7), (5, 11), mode="bilinear").reshape(16, -1).T) > 1e-3


def test_pos_embed_row_major_order_on_non_square_grid():
    """An embedding that varies only along rows still varies only along rows after resizing to a
    non-square grid (would fail if height and width were swapped in the reshapes)."""
    rows = torch.linspace(-1, 1, 6)[:, None, None] * torch.randn(1, 1, 8)
    spatial = rows.expand(6, 6, 8).reshape(36, 8)
    out = interpolate_pos_embed(torch.cat([torch.randn(1, 8), spatial]), (4, 9))[1:].reshape(4, 9, 8)
    assert torch.allclose(out, out[:, :1].expand_as(out), atol=1e-6)
    assert (out[0] - out[-1]).abs().max() > 0.1


# -- ViT ------------------------------------------------------------------------------------------


def test_vit_value_path_equals_self_only_attention_tiny():
    """Tiny ViT: features = last block with self-only attention (x + out_proj(v_i), then MLP),
    ln_post, proj; keys = out_proj(k). CLS dropped; shapes (B, D, h, w) / (B, W, h, w)."""
    clip = make_tiny_clip("vit")
    visual = clip.model.visual
    images = torch.randn(2, 3, 32, 32)
    feats, keys = dense_features(visual, images)
    assert feats.shape == (2, 32, 4, 4) and keys.shape == (2, 48, 4, 4)
    want, _, want_keys = vit_by_hand(visual, images)
    assert rel_err(as_tokens(feats), want) < 1e-5
    assert rel_err(as_tokens(keys), want_keys) < 1e-5
    # the check can fail: ordinary attention in the last block gives clearly different features
    assert rel_err(as_tokens(dense_features(visual, images, baseline=True)[0]), want) > 1e-2


def test_vit_value_path_equals_self_only_attention_vit_b16(vit_b16):
    """Real ViT-B-16 architecture (random weights), native 224: value path equals the hand computation."""
    images = torch.randn(1, 3, 224, 224)
    feats, keys = dense_features(vit_b16.visual, images)
    assert feats.shape == (1, 512, 14, 14) and keys.shape == (1, 768, 14, 14)
    want, _, want_keys = vit_by_hand(vit_b16.visual, images)
    assert rel_err(as_tokens(feats), want) < 1e-4
    assert rel_err(as_tokens(keys), want_keys) < 1e-4


def test_vit_baseline_equals_open_clip_tokens(vit_b16):
    """baseline=True on ViT-B-16 = open_clip's own forward tokens (ln_post'd) times proj."""
    visual = vit_b16.visual
    images = torch.randn(1, 3, 224, 224)
    feats, _ = dense_features(visual, images, baseline=True)
    visual.output_tokens = True
    try:
        _, tokens = visual(images)
    finally:
        visual.output_tokens = False
    assert rel_err(as_tokens(feats), tokens @ visual.proj) < 1e-5


def test_vit_non_native_size_equals_model_with_resized_pos_embed():
    """A non-square, non-native input equals open_clip's forward path on a copy whose positional
    embedding was resized bicubically by hand (checks interpolation and patch order end to end)."""
    clip = make_tiny_clip("vit", seed=1)
    visual = clip.model.visual
    images = torch.randn(1, 3, 40, 72)  # 5 x 9 patches
    feats, keys = dense_features(visual, images)
    assert feats.shape == (1, 32, 5, 9) and keys.shape == (1, 48, 5, 9)
    resized = copy.deepcopy(visual)
    resized.positional_embedding = torch.nn.Parameter(hand_interp(visual.positional_embedding, (5, 9)))
    want, _, want_keys = vit_by_hand(resized, images)
    assert rel_err(as_tokens(feats), want) < 1e-5
    assert rel_err(as_tokens(keys), want_keys) < 1e-5


def _equal_patch_pos(visual) -> None:
    """Give every patch the same positional embedding (the class token keeps its own)."""
    with torch.no_grad():
        visual.positional_embedding[1:] = torch.randn(visual.positional_embedding.shape[1])


@pytest.mark.parametrize("size", [(32, 32), (24, 56)])
def test_vit_constant_image_gives_equal_patch_features(size):
    """Constant image + identical patch positional embeddings -> every patch's feature (and key) is
    the same; the class token's own feature differs, so a CLS leak or a location-dependent mixing
    (e.g. a causal mask) would break the equality."""
    clip = make_tiny_clip("vit", seed=2)
    visual = clip.model.visual
    _equal_patch_pos(visual)
    images = torch.full((1, 3, *size), 0.7)
    feats, keys = dense_features(visual, images)
    f, k = as_tokens(feats)[0], as_tokens(keys)[0]
    assert rel_err(f, f[:1].expand_as(f)) < 1e-5
    assert rel_err(k, k[:1].expand_as(k)) < 1e-5
    if size == (32, 32):  # native: the CLS token's value-path feature is far from the patches'
        _, cls, _ = vit_by_hand(visual, images)
        assert rel_err(cls, f[:1]) > 1e-2


def test_vit_constant_image_features_differ_with_real_positions():
    """Sanity for the test above: with ordinary (distinct) positional embeddings, patches differ."""
    clip = make_tiny_clip("vit", seed=2)
    feats, _ = dense_features(clip.model.visual, torch.full((1, 3, 32, 32), 0.7))
    f = as_tokens(feats)[0]
    assert rel_err(f, f[:1].expand_as(f)) > 1e-2


def test_vit_last_block_does_not_mix_locations():
    """Perturbing one token entering the last block changes only that patch's feature and key
    (value path); under the baseline's full attention the other patches change too."""
    clip = make_tiny_clip("vit", seed=3)
    visual = clip.model.visual
    images = torch.randn(1, 3, 24, 40)  # 3 x 5 patches
    target = 1 + 1 * 5 + 3  # token of patch (row 1, col 3)
    base_f, base_k = dense_features(visual, images)
    base_b, _ = dense_features(visual, images, baseline=True)

    def bump(module, inputs, output):
        output = output.clone()
        output[:, target] += torch.randn(output.shape[-1])
        return output

    handle = visual.transformer.resblocks[-2].register_forward_hook(bump)
    try:
        torch.manual_seed(5)
        f, k = dense_features(visual, images)
        torch.manual_seed(5)
        b, _ = dense_features(visual, images, baseline=True)
    finally:
        handle.remove()
    changed = (f - base_f).abs().amax(dim=1)[0] > 1e-6
    assert changed[1, 3] and changed.sum() == 1
    assert ((k - base_k).abs().amax(dim=1)[0] > 1e-6).sum() == 1
    assert ((b - base_b).abs().amax(dim=1)[0] > 1e-6).sum() == 15


def test_vit_one_layer_features_are_per_patch():
    """In a 1-block ViT every feature depends only on its own patch's pixels (checks the patch
    order on a non-square grid: changing the pixels of patch (2, 1) changes only feature (2, 1))."""
    cfg = copy.deepcopy(TINY_CONFIGS["vit"])
    cfg["vision_cfg"]["layers"] = 1
    torch.manual_seed(0)
    visual = from_model(open_clip.CLIP(**cfg)).model.visual
    images = torch.randn(1, 3, 32, 24)  # 4 rows x 3 cols of 8px patches
    other = images.clone()
    other[:, :, 16:24, 8:16] += 1.0
    a, _ = dense_features(visual, images)
    b, _ = dense_features(visual, other)
    changed = (a - b).abs().amax(dim=1)[0] > 1e-6
    assert changed.shape == (4, 3) and changed[2, 1] and changed.sum() == 1


# -- ResNet ---------------------------------------------------------------------------------------


def attnpool_input_and_output(visual, images):
    """open_clip's full visual forward, capturing the attention pool's input map and its output."""
    seen = {}
    handle = visual.attnpool.register_forward_hook(lambda m, i, o: seen.update(x=i[0], out=o))
    try:
        visual(images)
    finally:
        handle.remove()
    return seen["x"], seen["out"]


def resnet_by_hand(pool, x: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-location c_proj(v_proj(x_i + pos_i)) and k_proj(x_i + pos_i), tokens in the pool's order."""
    tokens = x.flatten(2).transpose(1, 2) + pos[1:]
    return pool.c_proj(pool.v_proj(tokens)), pool.k_proj(tokens)


def check_uniform_attnpool(visual, images, tol, baseline_too=True):
    """With q_proj zeroed the pool's attention is uniform over its HW+1 tokens, so its output is the
    mean of c_proj(v_proj(token)) over the global (mean) token and every location: i.e. the mean of
    the MaskCLIP dense features and the mean token's feature. Also checks every location against
    the per-token hand computation."""
    pool = visual.attnpool
    saved = pool.q_proj.weight.clone(), pool.q_proj.bias.clone()
    with torch.no_grad():
        pool.q_proj.weight.zero_()
        pool.q_proj.bias.zero_()
    try:
        x, pooled = attnpool_input_and_output(visual, images)
        feats, keys = dense_features(visual, images)
        baseline = dense_features(visual, images, baseline=True)[0] if baseline_too else None
    finally:
        with torch.no_grad():
            pool.q_proj.weight.copy_(saved[0])
            pool.q_proj.bias.copy_(saved[1])
    mean_feat = pool.c_proj(pool.v_proj(x.mean(dim=(2, 3)) + pool.positional_embedding[0]))
    hw = feats.shape[2] * feats.shape[3]
    by_formula = (mean_feat + feats.sum(dim=(2, 3))) / (hw + 1)
    assert rel_err(by_formula, pooled) < tol
    if baseline is not None:  # the baseline uses every location as a query of the same (now uniform) pool
        assert rel_err(as_tokens(baseline), pooled[:, None].expand(-1, hw, -1)) < tol
    want, want_keys = resnet_by_hand(pool, x, pool.positional_embedding)
    assert rel_err(as_tokens(feats), want) < tol
    assert rel_err(as_tokens(keys), want_keys) < tol


def test_resnet_conv_formulation_equals_uniform_attnpool_tiny():
    """Tiny ModifiedResNet at its native 64x64 input: 1x1-conv formulation = attention pool by hand."""
    clip = make_tiny_clip("resnet")
    images = torch.randn(2, 3, 64, 64)
    feats, keys = dense_features(clip.model.visual, images)
    assert feats.shape == (2, 32, 2, 2) and keys.shape == (2, 256, 2, 2)
    check_uniform_attnpool(clip.model.visual, images, 1e-5)


def test_resnet_conv_formulation_equals_uniform_attnpool_rn50(rn50):
    """Real RN50 architecture (random weights) at native 224: same identity, 7x7 map."""
    images = torch.randn(1, 3, 224, 224)
    check_uniform_attnpool(rn50.visual, images, 1e-4, baseline_too=False)


def test_resnet_non_native_size_uses_interpolated_pos_embed():
    """A non-square input: every location equals c_proj(v_proj(x_i + bicubic pos_i)) by hand."""
    clip = make_tiny_clip("resnet", seed=1)
    visual = clip.model.visual
    images = torch.randn(1, 3, 96, 160)  # 3 x 5 map
    feats, keys = dense_features(visual, images)
    assert feats.shape == (1, 32, 3, 5)
    x = visual.layer4(visual.layer3(visual.layer2(visual.layer1(visual.stem(images)))))
    pos = hand_interp(visual.attnpool.positional_embedding, (3, 5))
    want, want_keys = resnet_by_hand(visual.attnpool, x, pos)
    assert rel_err(as_tokens(feats), want) < 1e-5
    assert rel_err(as_tokens(keys), want_keys) < 1e-5


# -- dispatch -------------------------------------------------------------------------------------


def test_output_stride_and_unsupported_tower():
    """Stride is the ViT patch size or 32 for ResNets; other towers are refused with MaskCLIPError."""
    assert output_stride(make_tiny_clip("vit").model.visual) == 8
    assert output_stride(make_tiny_clip("resnet").model.visual) == 32
    with pytest.raises(MaskCLIPError, match="Unsupported"):
        dense_features(torch.nn.Linear(3, 3), torch.randn(1, 3, 8, 8))
