"""MaskCLIP on a CLIP ModifiedResNet: the attention pool as two 1x1 convolutions (paper §3.3).

The attention pool computes ``c_proj(sum_i softmax(q̄·k_i) v_i)``. Dropping the query and key
embeddings leaves ``c_proj(v_proj(x_i))`` at every location: two 1x1 convolutions over the final
feature map. The pool's positional embedding is interpolated to the map and added first, as in
the pool itself (the authors' code omits it; see README).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.modified_resnet import ModifiedResNet

from .pos_embed import interpolate_pos_embed


def _conv1x1(x: torch.Tensor, linear: torch.nn.Linear) -> torch.Tensor:
    return F.conv2d(x, linear.weight[:, :, None, None], linear.bias)


def resnet_dense(visual: ModifiedResNet, images: torch.Tensor, baseline: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(features (B, D, h, w), keys (B, C, h, w))`` for a batch of normalised images.

    ``baseline=True`` gives the paper's naive baseline: every location used as a query of the
    unmodified attention pool.
    """
    x = visual.stem(images)
    x = visual.layer4(visual.layer3(visual.layer2(visual.layer1(x))))
    pool = visual.attnpool
    b, c, h, w = x.shape
    mean_token = x.mean(dim=(2, 3)) + pool.positional_embedding[0].to(x.dtype)  # the pool's global token
    pos = interpolate_pos_embed(pool.positional_embedding, (h, w))
    x = x + pos[1:].T.reshape(1, c, h, w).to(x.dtype)
    keys = _conv1x1(x, pool.k_proj)
    if not baseline:
        return _conv1x1(_conv1x1(x, pool.v_proj), pool.c_proj), keys
    tokens = x.flatten(2).permute(2, 0, 1)  # (hw, B, C)
    kv = torch.cat([mean_token[None], tokens])  # keys/values as in the pool: global token + locations
    out, _ = F.multi_head_attention_forward(
        query=tokens, key=kv, value=kv, embed_dim_to_check=c, num_heads=pool.num_heads,
        q_proj_weight=pool.q_proj.weight, k_proj_weight=pool.k_proj.weight, v_proj_weight=pool.v_proj.weight,
        in_proj_weight=None, in_proj_bias=torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]),
        bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0,
        out_proj_weight=pool.c_proj.weight, out_proj_bias=pool.c_proj.bias,
        use_separate_proj_weight=True, training=False, need_weights=False,
    )
    return out.permute(1, 2, 0).reshape(b, -1, h, w), keys
