"""MaskCLIP's inference settings: one dataclass, the only place their defaults are written.

Plain values, no torch: the CLI reads its option defaults from here and the label record stores
these fields (``LabelRecord.inference``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..clip.methods import DEFAULT_METHOD, DEFAULT_SAM, PROXY_BETA, PROXY_GAMMA, REGISTRY, get_method
from ..core.constants import SOFTMAX_SCALE
from ..core.errors import ParameterError, check_range
from ..core.record import BackboneSource, WeightsSource

PAMR_ITERATIONS = 10  # PAMR as SCLIP and NACLIP run it (visinf/1-stage-wseg)
PAMR_DILATIONS = (8, 16)
# the fields of each extra backbone a method may need (None unless the method needs it)
_BACKBONE_FIELDS = {"proxy": ("proxy_model", "proxy_pretrained", "proxy_checkpoint", "proxy_beta", "proxy_gamma"),
                    "sam": ("sam_model", "sam_pretrained", "sam_checkpoint", "sam_refine_neg_cos")}
_LOADING_FIELDS = ("proxy_model", "proxy_pretrained", "proxy_checkpoint", "sam_model", "sam_pretrained", "sam_checkpoint")


@dataclass
class MaskCLIPConfig:
    """Inference settings. Defaults follow the paper (whole image, short side 512, KS + PD).

    ``method`` picks the dense-feature recipe of the last ViT block: maskclip (the paper), sclip,
    clearclip or naclip (training-free successors; ViT only). Key smoothing and prompt denoising
    apply on top of any method. Probabilities are ``softmax(logit_scale * cosine)`` (CLIP's 100;
    the successors' protocol uses 40-65).

    ``upsample_logits`` (used when key smoothing is off) takes the successors' output path, which
    is also MaskCLIP's own code without key smoothing: cosine logits per prompt are upsampled (with
    a sliding window: each window's logits bilinearly to its pixels, then averaged), and the
    softmax over all prompts comes after. ``pamr`` refines the scores at the original size
    (logits on that path, probabilities otherwise). ``area_threshold`` (needs a background class)
    zeroes foreground classes covering at most that fraction of an image's foreground pixels
    (SCLIP on VOC with background).

    ``max_long_side`` (None: off) switches the input size to MMSegmentation's keep-ratio box rule of
    the eval protocols: the largest scale at which the long side is at most ``max_long_side`` and
    the short side at most ``short_side``.

    Methods with a second backbone (``proxyclip``, ``trident``; :mod:`maskclip_cli.clip.methods`):
    ``proxy_model`` (a timm ViT name with its tag; default the method's), ``proxy_pretrained`` (a timm
    tag replacing the name's, or "none": random weights), ``proxy_checkpoint`` (a local timm state
    dict), likewise ``sam_*`` for Trident's SAM; ``proxy_beta``/``proxy_gamma`` (ProxyCLIP's
    S' = (S - beta * mean(S)) * gamma), ``sam_refine_neg_cos`` (Trident). For Trident, ``window`` and
    ``stride`` are its crops (default 336 / 224). These fields are None for the other methods and
    then left out of the record; where the backbones came from is recorded in ``LabelRecord.backbones``.
    """

    method: str = DEFAULT_METHOD
    templates: str = "vild"
    background: list[str] = field(default_factory=list)
    key_smoothing: bool = True
    prompt_denoising: bool = True
    denoise_threshold: float = 0.5
    short_side: int = 512
    window: int | None = None
    stride: int | None = None
    baseline: bool = False  # the paper's naive baseline: ordinary last-layer tokens
    logit_scale: float = SOFTMAX_SCALE
    upsample_logits: bool = False
    pamr: bool = False
    pamr_iterations: int = PAMR_ITERATIONS
    pamr_dilations: tuple[int, ...] = PAMR_DILATIONS
    area_threshold: float | None = None
    authors_code: bool = False  # the authors' MaskCLIP code's differences from CLIP (engine/authors_code.py)
    max_long_side: int | None = None
    proxy_model: str | None = None
    proxy_pretrained: str | None = None
    proxy_checkpoint: str | None = None
    sam_model: str | None = None
    sam_pretrained: str | None = None
    sam_checkpoint: str | None = None
    proxy_beta: float | None = None
    proxy_gamma: float | None = None
    sam_refine_neg_cos: bool | None = None

    def __post_init__(self) -> None:  # checked on construction, before any model is loaded
        needs = get_method(self.method).needs
        for backbone, fields in _BACKBONE_FIELDS.items():
            given = [f for f in fields if getattr(self, f) is not None]
            if given and backbone not in needs:
                users = " or ".join(m.name for m in REGISTRY.values() if backbone in m.needs)
                raise ParameterError(f"{{}} needs --method {users}.", given[0])
        if "proxy" in needs:  # the defaults written out, so the record says what was used
            self.proxy_beta = PROXY_BETA if self.proxy_beta is None else self.proxy_beta
            self.proxy_gamma = PROXY_GAMMA if self.proxy_gamma is None else self.proxy_gamma
        if "sam" in needs and self.sam_refine_neg_cos is None:
            self.sam_refine_neg_cos = True
        check_range("proxy_beta", self.proxy_beta)  # any finite value
        check_range("proxy_gamma", self.proxy_gamma, 0, above=True)
        check_range("denoise_threshold", self.denoise_threshold, 0, 1)
        check_range("short_side", self.short_side, 1)
        check_range("window", self.window, 1)
        check_range("stride", self.stride, 1)
        if self.window is not None and self.stride is not None and self.stride > self.window:
            raise ParameterError("{} must be at most {} (larger strides leave pixels uncovered).", "stride", "window")
        check_range("logit_scale", self.logit_scale, 0, above=True)
        check_range("pamr_iterations", self.pamr_iterations, 1)
        if not self.pamr_dilations or min(self.pamr_dilations) < 1:
            raise ParameterError("{} must be positive integers, e.g. 8,16.", "pamr_dilations")
        check_range("area_threshold", self.area_threshold, 0, 1)
        check_range("max_long_side", self.max_long_side, 1)

    def inference_record(self) -> dict:
        """The settings as ``LabelRecord.inference`` stores them (JSON values). The keys of 0.2.0 stay
        exactly as they were, so its label folders resume: ``max_long_side`` appears only when set, and
        then as the box rule ``(max_long_side, max_short_side)`` with no fixed ``short_side``."""
        inference = {**asdict(self), "pamr_dilations": list(self.pamr_dilations)}
        for name in _LOADING_FIELDS:  # recorded as LabelRecord.backbones, with the weights' identity
            del inference[name]
        for name in ("proxy_beta", "proxy_gamma", "sam_refine_neg_cos"):
            if inference[name] is None:  # not a proxy method: records stay as they were
                del inference[name]
        if self.max_long_side is None:
            del inference["max_long_side"]
        else:
            inference.update(short_side=None, max_short_side=self.short_side)
        return inference


def backbone_sources(config: MaskCLIPConfig) -> dict[str, BackboneSource]:
    """The backbones ``config.method`` needs beside CLIP (by need: "proxy", "sam"), as its
    ``*_model``/``*_pretrained``/``*_checkpoint`` fields name them, before anything is loaded: the
    model with its timm tag (``*_pretrained`` replaces the name's tag) and where its weights come from."""
    method = get_method(config.method)
    given = {"proxy": (config.proxy_model or method.default_proxy, config.proxy_pretrained, config.proxy_checkpoint),
             "sam": (config.sam_model or DEFAULT_SAM, config.sam_pretrained, config.sam_checkpoint)}
    sources = {}
    for need in method.needs:
        name, tag, path = given[need]
        if tag not in (None, "none"):
            name = f"{name.split('.', 1)[0]}.{tag}"
        weights = (WeightsSource("checkpoint", path=str(path)) if path is not None else WeightsSource("random") if tag == "none"
                   else WeightsSource("tag", tag=name.split(".", 1)[1] if "." in name else None))
        sources[need] = BackboneSource(str(name), weights)
    return sources


def backbone_fields(backbones: dict[str, BackboneSource]) -> dict:
    """The config fields that load ``backbones`` (a record's) again: the inverse of :func:`backbone_sources`."""
    fields = {}
    for need, source in backbones.items():
        fields[f"{need}_model"] = source.model
        if source.weights.kind == "checkpoint":
            fields[f"{need}_checkpoint"] = source.weights.path
        elif source.weights.kind == "random":
            fields[f"{need}_pretrained"] = "none"
    return fields
