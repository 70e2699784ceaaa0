"""MaskCLIP's inference settings: one dataclass, the only place their defaults are written.

Plain values, no torch: the CLI reads its option defaults from here and the label record stores
these fields (``LabelRecord.inference``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..clip.methods import DEFAULT_METHOD, check_method
from ..core.constants import SOFTMAX_SCALE
from ..core.errors import ParameterError, check_range

PAMR_ITERATIONS = 10  # PAMR as SCLIP and NACLIP run it (visinf/1-stage-wseg)
PAMR_DILATIONS = (8, 16)


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

    def __post_init__(self) -> None:  # checked on construction, before any model is loaded
        check_method(self.method)
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
        if self.max_long_side is None:
            del inference["max_long_side"]
        else:
            inference.update(short_side=None, max_short_side=self.short_side)
        return inference
