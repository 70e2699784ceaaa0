"""The one way to construct the MaskCLIP segmenter: CLIP (loaded from a source, or given) + config + classes.

The CLI (label, eval), evaluation, the online labeller and the demo all build it here, so what a method
needs is loaded in one place (segment-anything's ``build_sam``: a builder per variant; here the
method's registry entry, :mod:`maskclip_cli.clip.methods`, says what it needs).
"""

from __future__ import annotations

import os
from typing import Sequence

import torch

from ..clip.loading import LoadedCLIP, load_clip
from ..core.constants import DEFAULT_MODEL, DEFAULT_PRETRAINED
from ..core.hooks import SILENT, ProgressHook
from ..core.vocabulary import ClassSpec, ClassVocabulary
from .config import MaskCLIPConfig, backbone_sources
from .maskclip import MaskCLIP


def build_segmenter(
    classes: ClassVocabulary | Sequence[ClassSpec],
    config: MaskCLIPConfig | None = None,
    *,
    clip: LoadedCLIP | None = None,
    model: str = DEFAULT_MODEL,
    pretrained: str = DEFAULT_PRETRAINED,
    checkpoint: str | os.PathLike | None = None,
    quick_gelu: bool | None = None,
    device: str | torch.device = "cpu",
    cache_dir: str | os.PathLike | None = None,
    hook: ProgressHook = SILENT,
) -> MaskCLIP:
    """MaskCLIP over ``classes`` (a vocabulary, or class specs merged with ``config``'s background words)
    with ``config`` (default settings when None).

    CLIP is ``clip`` when given (already loaded: the demo, the online labeller), else loaded from
    ``model`` with its ``checkpoint`` file or ``pretrained`` tag onto ``device`` (see
    :func:`~maskclip_cli.clip.loading.load_clip`). The backbones the method needs beside CLIP (a
    proxy, SAM) are loaded as ``config.proxy_*``/``sam_*`` say (:func:`load_backbones`), before CLIP,
    so a bad proxy name or missing weights fail first. The classes and the config are checked before
    anything is loaded. ``cache_dir`` holds the text-embedding cache.
    """
    config = config or MaskCLIPConfig()
    if not isinstance(classes, ClassVocabulary):  # cheap checks first: no model is loaded for a bad class list
        classes = ClassVocabulary.build(classes, config.background)
    backbones = load_backbones(config, clip.device if clip is not None else device)
    if clip is None:
        clip = load_clip(model, pretrained, checkpoint, device, hook=hook, quick_gelu=quick_gelu)
    return MaskCLIP(clip, classes, config, cache_dir=cache_dir, hook=hook, backbones=backbones)


def load_backbones(config: MaskCLIPConfig, device: str | torch.device = "cpu") -> dict:
    """The frozen backbones ``config.method`` needs beside CLIP, by need ("proxy", "sam"), loaded as
    :func:`~maskclip_cli.engine.config.backbone_sources` names them: from a checkpoint file, else the
    timm tag from the Hugging Face cache, else random weights. None needed: ``{}``."""
    from ..clip.proxy.backbone import load_proxy, load_sam  # timm: only for the methods that need it

    loaders = {"proxy": load_proxy, "sam": load_sam}
    return {need: loaders[need](source.model, pretrained=source.weights.kind != "random", checkpoint=source.weights.path, device=device)
            for need, source in backbone_sources(config).items()}
