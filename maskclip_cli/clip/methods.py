"""The dense-feature methods: one table, each method an object stating what it needs (no torch here).

A :class:`Method` names its last-block recipe lazily (module and function), so configs, records
and the CLI's help read the table without importing torch; the recipe is imported the first time
features are computed. Adding a last-block method touches two files: its recipe module under
:mod:`maskclip_cli.clip.last_block` and one entry of ``REGISTRY`` below. A method that runs other
frozen backbones beside CLIP (``needs``) names instead a whole dense encoder under
:mod:`maskclip_cli.clip.proxy`; ``engine.build`` loads what it needs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Callable

from ..core.errors import MaskCLIPError

if TYPE_CHECKING:
    import torch

    # (last block, its input tokens (B, 1 + hw, W), the patch grid) -> its output tokens
    LastBlock = Callable[[torch.nn.Module, torch.Tensor, tuple[int, int]], torch.Tensor]


@dataclass(frozen=True)
class Method:
    """One dense-feature method and what it needs.

    ``recipe`` is ``"module:function"`` under :mod:`maskclip_cli.clip.last_block`: the function maps
    the last ViT block's input tokens to its output tokens. ``vit_only``: the method changes the ViT
    attention, so a ModifiedResNet cannot run it (MaskCLIP's own recipe has a ResNet form).
    ``pos_embed_scale_offset``: 0 resizes the positional embedding to the grid's size; > 0 by the
    scale factor ``(grid + offset) / grid0`` as DINO's code does (see :mod:`maskclip_cli.clip.pos_embed`).
    ``needs``: extra frozen backbones the method runs beside CLIP ("proxy": a timm ViT such as DINO,
    "sam": SAM's image encoder); then ``recipe`` names an encoder builder under
    :mod:`maskclip_cli.clip.proxy` (see :func:`maskclip_cli.clip.proxy.encoders.proxyclip_encoder`) and
    ``default_proxy`` the proxy used when none is given. ``whole_image``: the method crops the image
    itself (Trident), so the segmenter passes it whole, its window and stride as the method's crops.
    """

    name: str
    recipe: str
    summary: str
    vit_only: bool = True
    pos_embed_scale_offset: float = 0.0
    needs: tuple[str, ...] = ()
    default_proxy: str | None = None
    whole_image: bool = False

    @cached_property
    def last_block(self) -> LastBlock:
        """The recipe function, imported on first use (it needs torch)."""
        return self._recipe("last_block")

    @cached_property
    def encoder(self) -> Callable:
        """The dense-encoder builder of a method with ``needs``, imported on first use."""
        return self._recipe("proxy")

    def _recipe(self, package: str) -> Callable:
        module, function = self.recipe.split(":")
        return getattr(importlib.import_module(f"{__package__}.{package}.{module}"), function)


DEFAULT_PROXY = "vit_base_patch8_224.dino"  # ProxyCLIP's best published setting (DINO ViT-B/8)
TRIDENT_PROXY = "vit_base_patch16_224.dino"  # Trident's base config
DEFAULT_SAM = "samvit_base_patch16.sa1b"
PROXY_BETA = 1.2  # ProxyCLIP's S' = (S - beta * mean(S)) * gamma (the authors' defaults)
PROXY_GAMMA = 3.0

# The successors' code resizes the positional embedding by the scale factor (grid + 0.1) / 14 (DINO's
# interpolation), MaskCLIP's by size.
REGISTRY: dict[str, Method] = {m.name: m for m in (
    Method("maskclip", "maskclip:maskclip_block", "the paper: identity attention in the last block", vit_only=False),
    Method("sclip", "sclip:sclip_block", "SCLIP, correlative self-attention", pos_embed_scale_offset=0.1),
    Method("clearclip", "clearclip:clearclip_block", "ClearCLIP, query-query attention without residual", pos_embed_scale_offset=0.1),
    Method("naclip", "naclip:naclip_block", "NACLIP, neighbourhood-aware key-key attention", pos_embed_scale_offset=0.1),
    Method("proxyclip", "encoders:proxyclip_encoder", "ProxyCLIP, last-block attention from a DINO proxy's patch similarities",
           pos_embed_scale_offset=0.1, needs=("proxy",), default_proxy=DEFAULT_PROXY),
    Method("trident", "encoders:trident_encoder", "Trident, ProxyCLIP on crops spliced and re-aggregated by SAM's attention",
           pos_embed_scale_offset=0.1, needs=("proxy", "sam"), default_proxy=TRIDENT_PROXY, whole_image=True),
)}
METHODS: tuple[str, ...] = tuple(REGISTRY)
CLIP_ONLY_METHODS: tuple[str, ...] = tuple(m.name for m in REGISTRY.values() if not m.needs)  # no second backbone
DEFAULT_METHOD = "maskclip"


def get_method(method: str | Method) -> Method:
    """The :class:`Method` named ``method`` (a Method is returned as is); one clear error naming the choices."""
    if isinstance(method, Method):
        return method
    try:
        return REGISTRY[method]
    except (KeyError, TypeError):
        raise MaskCLIPError(f"Unknown method '{method}'; choose one of {', '.join(REGISTRY)}.") from None


def methods_help() -> str:
    """The methods for a CLI help text, from the table: ``maskclip (the paper: ...), sclip (...)``."""
    return ", ".join(f"{m.name} ({m.summary}{'; ViT only' if m.vit_only else ''})" for m in REGISTRY.values())
