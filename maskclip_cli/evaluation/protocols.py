"""Inference settings that make our numbers comparable with published tables.

``paper``: MaskCLIP's own evaluation (its MMSegmentation configs): whole-image inference, no flip,
85 ViLD templates. The image is rescaled keeping its ratio with MMSegmentation's ``Resize``
rule: the largest scale at which the long side is at most L and the short side at most S. The
configs use (L, S) = (520, 520) for PASCAL Context -- the image fits a 520x520 box, i.e. its
*long* side becomes 520 -- and (2048, 512) for the others, i.e. short side 512.

``sclip``: the protocol of SCLIP / ClearCLIP / NACLIP tables: 80 ImageNet templates, sliding
window 224 with stride 112, (L, S) = (2048, 336) for VOC and Context, (2048, 448) for COCO-Stuff
and ADE20K, (2048, 560) for Cityscapes. On the datasets with a background class (voc-bg,
pascal-context-60) pixels whose top class probability is below 0.1 become background, as their
``prob_thd=0.1``; background is one merged class whose words follow their class files. Their
probabilities use a softmax scale of 40-65 where MaskCLIP uses CLIP's 100, so the same threshold
marks somewhat fewer pixels; their area threshold and per-class synonym lists are not reproduced.

With ``paper`` the background datasets use the same merged background class without a threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

from ..clip.preprocess import to_model_input
from ..engine.maskclip import MaskCLIP, MaskCLIPConfig
from ..engine.segmenter import Segmenter
from ..errors import MaskCLIPError
from ..record import LabelRecord

PROTOCOLS = ("paper", "sclip")

# Words merged into the background class (SCLIP's class files).
VOC_BACKGROUND = (
    "sky", "wall", "tree", "wood", "grass", "road", "sea", "river", "mountain", "sands", "desk", "bed",
    "building", "cloud", "lamp", "door", "window", "wardrobe", "ceiling", "shelf", "curtain", "stair",
    "floor", "hill", "rail", "fence",
)
BACKGROUND_WORDS = {"voc-bg": VOC_BACKGROUND, "pascal-context-60": ("background",)}


@dataclass(frozen=True)
class ProtocolSettings:
    """What a protocol fixes for one dataset."""

    max_long: int
    max_short: int
    templates: str
    window: int | None
    stride: int | None
    background: tuple[str, ...]
    bg_threshold: float


def protocol_settings(protocol: str, dataset: str) -> ProtocolSettings:
    if protocol not in PROTOCOLS:
        raise MaskCLIPError(f"Unknown protocol '{protocol}'; choose one of {', '.join(PROTOCOLS)}.")
    background = BACKGROUND_WORDS.get(dataset, ())
    if protocol == "paper":
        box = (520, 520) if dataset.startswith("pascal-context") else (2048, 512)
        return ProtocolSettings(*box, "vild", None, None, background, 0.0)
    short = {"coco-stuff": 448, "ade20k": 448, "cityscapes": 560}.get(dataset, 336)
    return ProtocolSettings(2048, short, "imagenet", 224, 112, background, 0.1 if background else 0.0)


def fit_scale(width: int, height: int, max_long: int, max_short: int) -> float:
    """MMSegmentation's keep-ratio rescale factor: long side <= max_long and short side <= max_short."""
    return min(max_long / max(width, height), max_short / min(width, height))


class RescaledMaskCLIP(Segmenter):
    """MaskCLIP whose input size follows the (long, short) rescale rule instead of a fixed short side."""

    def __init__(self, inner: MaskCLIP, max_long: int, max_short: int):
        self.inner, self.max_long, self.max_short = inner, max_long, max_short
        self.class_names, self.device = inner.class_names, inner.device

    def prepare(self, image: Image.Image) -> torch.Tensor:
        w, h = image.size
        short = round(min(w, h) * fit_scale(w, h, self.max_long, self.max_short))
        return to_model_input(image, short, self.inner.patch, self.inner.clip.mean, self.inner.clip.std, self.max_long)

    def scores(self, images: torch.Tensor) -> torch.Tensor:
        return self.inner.scores(images)

    def record(self) -> LabelRecord:
        record = self.inner.record()
        record.inference.update(short_side=None, max_long_side=self.max_long, max_short_side=self.max_short)
        return record


def eval_config(
    settings: ProtocolSettings,
    templates: str | None = None,
    background: list[str] | None = None,
    short_side: int | None = None,
    window: int | None = None,
    stride: int | None = None,
    **refinement: object,
) -> MaskCLIPConfig:
    """The protocol's MaskCLIP settings with the user's overrides (None = the protocol's value;
    ``window=0`` = whole image). ``refinement`` holds key_smoothing, prompt_denoising, etc."""
    if background and not settings.background:
        raise MaskCLIPError("--background applies only to datasets with a background class (voc-bg, pascal-context-60).")
    if window == 0:
        window, stride = None, None
    elif window is None:
        window, stride = settings.window, stride or settings.stride
    return MaskCLIPConfig(
        templates=templates or settings.templates,
        background=list(background if background is not None else settings.background),
        short_side=short_side or settings.max_short,
        window=window,
        stride=stride,
        **refinement,
    )


def protocol_segmenter(maskclip: MaskCLIP, settings: ProtocolSettings, short_side: int | None) -> Segmenter:
    """The segmenter to run: the protocol's rescale rule unless the user fixed a short side."""
    return maskclip if short_side else RescaledMaskCLIP(maskclip, settings.max_long, settings.max_short)


def background_threshold(settings: ProtocolSettings, override: float | None) -> float:
    """The protocol's background threshold, or the user's where the dataset has a background class."""
    if override is None:
        return settings.bg_threshold
    if override > 0 and not settings.background:
        raise MaskCLIPError("--bg-threshold applies only to datasets with a background class (voc-bg, pascal-context-60).")
    return override
