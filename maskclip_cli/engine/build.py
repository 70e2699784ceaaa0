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
from .config import MaskCLIPConfig
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
    :func:`~maskclip_cli.clip.loading.load_clip`). The classes and the config are checked before
    anything is loaded. ``cache_dir`` holds the text-embedding cache.
    """
    config = config or MaskCLIPConfig()
    if not isinstance(classes, ClassVocabulary):  # cheap checks first: no model is loaded for a bad class list
        classes = ClassVocabulary.build(classes, config.background)
    if clip is None:
        clip = load_clip(model, pretrained, checkpoint, device, hook=hook, quick_gelu=quick_gelu)
    return MaskCLIP(clip, classes, config, cache_dir=cache_dir, hook=hook)
