"""The MaskCLIP segmenter: dense CLIP features classified by text embeddings, then refined.

One object holds the frozen CLIP, the class text embeddings and the inference settings. It is a
:class:`~maskclip_cli.engine.segmenter.Segmenter`, so the label, eval and train pipelines drive it the
same way as a trained MaskCLIP+ network.

Tokens per image are bounded: inputs are resized to ``short_side`` unless the long side would then
exceed ``MAX_ASPECT`` (4) times it, in which case the long side is capped (see
:mod:`maskclip_cli.clip.preprocess`); a grid thus holds at most about 4 * (short_side / patch)^2
tokens, and key smoothing works through its similarity in bounded row blocks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from ..class_groups import reduce_groups
from ..clip.dense import check_method_for, dense_features, output_stride
from ..clip.last_block import DEFAULT_METHOD
from ..clip.loading import LoadedCLIP
from ..clip.preprocess import resize_uint8
from ..clip.templates import get_templates
from ..clip.text_embeddings import class_embeddings
from ..constants import SOFTMAX_SCALE
from ..errors import MaskCLIPError, ParameterError, check_range
from ..hooks import SILENT, ProgressHook
from ..record import LabelRecord
from .key_smoothing import key_smooth
from .prompt_denoising import prompt_denoise
from .segmenter import Segmenter
from .sliding_window import window_starts

BACKGROUND = "background"


def validate_classes(classes: list[str]) -> list[str]:
    """Strip names; refuse an empty list or duplicates (they would silently merge label ids)."""
    names = [c.strip() for c in classes if c.strip()]
    if not names:
        raise MaskCLIPError("No classes given: pass --classes NAME [NAME ...] or --classes-file FILE.")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise MaskCLIPError(f"Duplicate class names: {', '.join(dupes)}.")
    return names


@dataclass
class MaskCLIPConfig:
    """Inference settings. Defaults follow the paper (whole image, short side 512, KS + PD).

    ``method`` picks the dense-feature recipe of the last ViT block: maskclip (the paper), sclip,
    clearclip or naclip (training-free successors; ViT only). Key smoothing and prompt denoising
    apply on top of any method.
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

    def __post_init__(self) -> None:  # checked on construction, before any model is loaded
        check_range("denoise_threshold", self.denoise_threshold, 0, 1)
        check_range("short_side", self.short_side, 1)
        check_range("window", self.window, 1)
        check_range("stride", self.stride, 1)
        if self.window is not None and self.stride is not None and self.stride > self.window:
            raise ParameterError("{} must be at most {} (larger strides leave pixels uncovered).", "stride", "window")


class MaskCLIP(Segmenter):
    """MaskCLIP over ``classes`` (plus an optional merged background class with id 0)."""

    def __init__(self, clip: LoadedCLIP, classes: list[str], config: MaskCLIPConfig | None = None, cache_dir: Path | None = None,
                 hook: ProgressHook = SILENT):
        self.clip = clip
        self.config = cfg = replace(config) if config else MaskCLIPConfig()  # a copy: defaults are filled in
        check_method_for(clip.model.visual, cfg.method, cfg.baseline)
        classes = validate_classes(classes)
        background = [w.strip() for w in cfg.background if w.strip()]
        if BACKGROUND in classes and background:
            raise MaskCLIPError(f"'{BACKGROUND}' is reserved for the --background class; rename that class.")
        self.class_names = ([BACKGROUND] if background else []) + classes
        prompts = background + classes
        self.groups = torch.tensor([0] * len(background) + [i + bool(background) for i in range(len(classes))])
        self.patch = output_stride(clip.model.visual)
        self.device, self.mean, self.std = clip.device, clip.mean, clip.std
        if cfg.short_side < self.patch:
            raise ParameterError(f"{{}} must be at least the model's patch size {self.patch} (got {cfg.short_side}).", "short_side")
        if cfg.window is not None:
            cfg.stride = cfg.stride or max(self.patch, cfg.window // 2 // self.patch * self.patch)
            if cfg.stride > cfg.window:
                raise ParameterError("{} must be at most {} (larger strides leave pixels uncovered).", "stride", "window")
            if cfg.window % self.patch or cfg.stride % self.patch:
                raise ParameterError(f"{{}} and {{}} must be multiples of the model's stride {self.patch}.", "window", "stride")
        self.text = class_embeddings(clip, prompts, get_templates(cfg.templates), cache_dir, hook).to(clip.device)

    # -- Segmenter interface -------------------------------------------------------------
    def resize(self, image: Image.Image) -> torch.Tensor:
        return resize_uint8(image, self.config.short_side, self.patch)

    @torch.no_grad()
    def scores(self, images: torch.Tensor) -> torch.Tensor:
        """On a GPU the image encoder runs in fp16; classification and refinement stay in fp32
        (softmax(100 * cosine) magnifies fp16 rounding of the cosines a hundredfold)."""
        on_gpu = images.device.type == "cuda"
        with torch.autocast(images.device.type, dtype=torch.float16, enabled=on_gpu):
            features, keys = self.encode(images)
        return self.refine(features.float(), keys.float())

    def record(self) -> LabelRecord:
        return LabelRecord(classes=list(self.class_names), clip=self.clip.source, inference=asdict(self.config))

    # -- MaskCLIP steps --------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """L2-normalised dense features (B, D, h, w) and keys (B, K, h, w) on the image's patch grid.

        With a sliding window the per-window maps are averaged where windows overlap. Averaging
        unit features then taking cosines equals averaging the windows' logits.
        """
        if self.config.window is None:
            feats, keys = dense_features(self.clip.model.visual, images, self.config.baseline, self.config.method)
            return F.normalize(feats.float(), dim=1), keys.float()
        return self._encode_sliding(images)

    def _encode_sliding(self, images: torch.Tensor, windows_per_pass: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows (all the same size) go through the model stacked, ``windows_per_pass`` at a time."""
        cfg, p = self.config, self.patch
        b, _, height, width = images.shape
        starts = [(y, x) for y in window_starts(height, cfg.window, cfg.stride) for x in window_starts(width, cfg.window, cfg.stride)]
        feat_sum = key_sum = None
        count = torch.zeros(1, 1, height // p, width // p, device=images.device)
        for i in range(0, len(starts), max(1, windows_per_pass // b)):
            chunk = starts[i : i + max(1, windows_per_pass // b)]
            crops = torch.cat([images[:, :, y : y + cfg.window, x : x + cfg.window] for y, x in chunk])
            feats, keys = dense_features(self.clip.model.visual, crops, cfg.baseline, cfg.method)
            feats = F.normalize(feats.float(), dim=1)
            if feat_sum is None:
                feat_sum = feats.new_zeros(b, feats.shape[1], height // p, width // p)
                key_sum = feats.new_zeros(b, keys.shape[1], height // p, width // p)
            for j, (y, x) in enumerate(chunk):
                sl = (slice(None), slice(None), slice(y // p, y // p + feats.shape[2]), slice(x // p, x // p + feats.shape[3]))
                feat_sum[sl] += feats[j * b : (j + 1) * b]
                key_sum[sl] += keys[j * b : (j + 1) * b].float()
                count[sl] += 1
        return feat_sum / count, key_sum / count

    def class_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Cosine logits (B, C, h, w); a merged class takes the max over its words."""
        per_prompt = torch.einsum("bdhw,rd->brhw", features, self.text.to(features))
        return reduce_groups(per_prompt, self.groups, len(self.class_names))

    def refine(self, features: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Class probabilities (B, C, h, w): logits, then prompt denoising, then key smoothing."""
        logits = self.class_logits(features)
        if self.config.prompt_denoising:
            logits = prompt_denoise(logits, self.config.denoise_threshold)
        if self.config.key_smoothing:
            return key_smooth(logits, keys)
        return (SOFTMAX_SCALE * logits).softmax(dim=1)
