"""What the last ViT block computes for dense features: one module per training-free method.

Each recipe ``(block, x, grid) -> tokens`` maps the last block's input tokens ``x`` (B, 1 + hw, W)
on a ``grid`` of patches to its output tokens, reusing the block's pretrained weights; ``ln_post``
and the projection follow in :mod:`maskclip_cli.clip.dense_vit`. The methods differ only here;
which recipe a method uses, and what else it needs, is its entry in :mod:`maskclip_cli.clip.methods`.
"""
