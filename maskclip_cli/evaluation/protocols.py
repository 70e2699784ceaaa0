"""Inference settings that make our numbers comparable with published tables.

``paper``: MaskCLIP's own evaluation (its MMSegmentation configs): whole-image inference, no flip,
85 ViLD templates. The image is rescaled keeping its ratio with MMSegmentation's ``Resize``
rule: the largest scale at which the long side is at most L and the short side at most S. The
configs use (L, S) = (520, 520) for PASCAL Context -- the image fits a 520x520 box, i.e. its
*long* side becomes 520 -- and (2048, 512) for the others, i.e. short side 512.

``sclip``: the protocol of SCLIP / ClearCLIP / NACLIP tables, as SCLIP's configs set it: 80
ImageNet templates; SCLIP's per-class synonym lists (shipped as ``data/synonyms_*.txt``; a class
scores the max over its words, which compete in the softmax); sliding window 224 with stride
112 whose cosine logits are upsampled per window and averaged per pixel, then upsampled to the
image before the softmax; (L, S) = (2048, 336) for VOC, Context and ADE20K, (2048, 448) for
COCO-Stuff, (2048, 560) for Cityscapes; softmax scale (``logit_scale``) 40, 65 on voc-bg and 50
on pascal-context-60; on the datasets with a background class (voc-bg, pascal-context-60) pixels
whose top probability is below 0.1 become background (``prob_thd``), and on voc-bg foreground
classes covering at most 10 % of an image's foreground are dropped (``area_thd``). No key
smoothing, no prompt denoising (their tables have neither; both can be turned on).

With ``paper`` the background datasets use the same merged background class without a threshold.

``paper-exact``: ``paper`` plus every known difference of the authors' MaskCLIP code from CLIP as
published (ImageNet mean/std, their ViT port's GELU and LayerNorm eps 1e-6, the ResNet pool without
its positional embedding, key smoothing over location-normalised keys, logits upsampled when key
smoothing is off; see :mod:`maskclip_cli.engine.authors_code`), to reproduce their Table 1.

``proxyclip``: ProxyCLIP's evaluation (mc-lan/ProxyCLIP configs): ``--method proxyclip`` with DINO
ViT-B/8, sliding window 336 with stride 112 (224 / 112 on Cityscapes), short side 336 (448 on ADE20K
and Cityscapes), the sclip protocol's templates, synonym lists and logit path, logit scale 40, background
threshold 0.2 on voc-bg and 0.15 on pascal-context-60. Their crops are padded to multiples of 56;
ours are resized to multiples of 16 (CLIP's patch and the proxy's), as for every method.

``trident``: Trident's (YuHengsss/Trident configs): ``--method trident`` (DINO ViT-B/16 on 336 crops,
stride 224, SAM ViT-B), logit scale 40, short side 448 on VOC and COCO-Stuff, 576 on PASCAL Context
and ADE20K (where SAM's negative thresholds are not refined), 688 on Cityscapes; background
thresholds as ProxyCLIP's.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.constants import SOFTMAX_SCALE
from ..core.errors import MaskCLIPError
from ..core.vocabulary import ClassVocabulary
from ..engine.config import MaskCLIPConfig
from .datasets import DatasetSpec, class_names, synonym_classes

PROTOCOLS = ("paper", "paper-exact", "sclip", "proxyclip", "trident")
SCLIP_LOGIT_SCALE = 40.0

# Words merged into the background class (SCLIP's class files).
VOC_BACKGROUND = (
    "sky", "wall", "tree", "wood", "grass", "road", "sea", "river", "mountain", "sands", "desk", "bed",
    "building", "cloud", "lamp", "door", "window", "wardrobe", "ceiling", "shelf", "curtain", "stair",
    "floor", "hill", "rail", "fence",
)
BACKGROUND_WORDS = {"voc-bg": VOC_BACKGROUND, "pascal-context-60": ("background",)}
PROXY_BG_THRESHOLD = {"voc-bg": 0.2, "pascal-context-60": 0.15}  # ProxyCLIP's prob_thd (COCO-Object's 0.25: not a dataset here)


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
    logit_scale: float = SOFTMAX_SCALE
    area_threshold: float | None = None
    synonyms: bool = False  # classes from the shipped synonym lists
    key_smoothing: bool = True
    prompt_denoising: bool = True
    upsample_logits: bool = False
    authors_code: bool = False
    method: str = "maskclip"
    sam_refine_neg_cos: bool | None = None  # trident only


def protocol_settings(protocol: str, dataset: str) -> ProtocolSettings:
    if protocol not in PROTOCOLS:
        raise MaskCLIPError(f"Unknown protocol '{protocol}'; choose one of {', '.join(PROTOCOLS)}.")
    background = BACKGROUND_WORDS.get(dataset, ())
    if protocol in ("paper", "paper-exact"):
        box = (520, 520) if dataset.startswith("pascal-context") else (2048, 512)
        exact = protocol == "paper-exact"
        return ProtocolSettings(*box, "vild", None, None, background, 0.0, upsample_logits=exact, authors_code=exact)
    successors = dict(synonyms=True, key_smoothing=False, prompt_denoising=False, upsample_logits=True)
    if protocol == "proxyclip":
        short = {"ade20k": 448, "cityscapes": 448}.get(dataset, 336)
        window = 224 if dataset == "cityscapes" else 336
        return ProtocolSettings(2048, short, "imagenet", window, 112, background, PROXY_BG_THRESHOLD.get(dataset, 0.0),
                                SCLIP_LOGIT_SCALE, method="proxyclip", **successors)
    if protocol == "trident":
        short = {"pascal-context": 576, "pascal-context-60": 576, "ade20k": 576, "cityscapes": 688}.get(dataset, 448)
        return ProtocolSettings(2048, short, "imagenet", 336, 224, background, PROXY_BG_THRESHOLD.get(dataset, 0.0),
                                SCLIP_LOGIT_SCALE, method="trident", sam_refine_neg_cos=dataset != "ade20k", **successors)
    short = {"coco-stuff": 448, "cityscapes": 560}.get(dataset, 336)
    scale = {"voc-bg": 65.0, "pascal-context-60": 50.0}.get(dataset, SCLIP_LOGIT_SCALE)
    return ProtocolSettings(2048, short, "imagenet", 224, 112, background, 0.1 if background else 0.0, scale,
                            0.1 if dataset == "voc-bg" else None, **successors)


def eval_config(
    settings: ProtocolSettings,
    templates: str | None = None,
    background: list[str] | None = None,
    short_side: int | None = None,
    window: int | None = None,
    stride: int | None = None,
    key_smoothing: bool | None = None,
    prompt_denoising: bool | None = None,
    logit_scale: float | None = None,
    area_threshold: float | None = None,
    method: str | None = None,
    **refinement: object,
) -> MaskCLIPConfig:
    """The protocol's MaskCLIP settings with the user's overrides (None = the protocol's value;
    ``window=0`` = whole image; ``area_threshold=0`` = off). ``refinement`` holds method,
    denoise_threshold, pamr, the proxy options, etc. Without a ``short_side`` the input follows the protocol's
    (long, short) rescale box (``max_long_side``)."""
    if background and not settings.background:
        raise MaskCLIPError("--background applies only to datasets with a background class (voc-bg, pascal-context-60).")
    method = method or settings.method
    if method == "trident" and refinement.get("sam_refine_neg_cos") is None:
        refinement["sam_refine_neg_cos"] = settings.sam_refine_neg_cos
    if window == 0:
        window, stride = None, None
    elif window is None:
        window, stride = settings.window, stride or settings.stride
    return MaskCLIPConfig(
        templates=templates or settings.templates,
        background=list(background if background is not None else settings.background),
        short_side=short_side or settings.max_short,
        max_long_side=None if short_side else settings.max_long,
        window=window,
        stride=stride,
        key_smoothing=settings.key_smoothing if key_smoothing is None else key_smoothing,
        prompt_denoising=settings.prompt_denoising if prompt_denoising is None else prompt_denoising,
        logit_scale=logit_scale or settings.logit_scale,
        area_threshold=settings.area_threshold if area_threshold is None else (area_threshold or None),
        upsample_logits=settings.upsample_logits,
        authors_code=settings.authors_code,
        method=method,
        **refinement,
    )


def protocol_vocabulary(settings: ProtocolSettings, spec: DatasetSpec, config: MaskCLIPConfig) -> ClassVocabulary:
    """The classes MaskCLIP is built with for a dataset: the class names, or with ``synonyms`` the
    shipped synonym lists (whose first line, on datasets with a background class, holds the
    background words that ``BACKGROUND_WORDS`` repeats), with ``config``'s background words."""
    lines = synonym_classes(spec) if settings.synonyms else class_names(spec)
    return ClassVocabulary.build(lines[1:] if spec.background else lines, config.background)


def background_threshold(settings: ProtocolSettings, override: float | None) -> float:
    """The protocol's background threshold, or the user's where the dataset has a background class."""
    if override is None:
        return settings.bg_threshold
    if override > 0 and not settings.background:
        raise MaskCLIPError("--bg-threshold applies only to datasets with a background class (voc-bg, pascal-context-60).")
    return override
