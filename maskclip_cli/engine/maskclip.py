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

import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from .class_groups import reduce_groups
from ..clip.dense import dense_encoder, output_stride
from ..clip.loading import LoadedCLIP
from ..clip.methods import get_method
from ..clip.preprocess import box_short_side, resize_uint8
from ..clip.templates import get_templates
from ..clip.text_embeddings import class_embeddings
from ..core.errors import MaskCLIPError, ParameterError
from ..core.hooks import SILENT, ProgressHook
from ..core.record import BackboneSource, LabelRecord
from ..core.vocabulary import ClassSpec, ClassVocabulary, background_words
from .authors_code import AUTHORS_MEAN, AUTHORS_STD, authors_key_smooth, authors_port
from .config import MaskCLIPConfig
from .key_smoothing import key_smooth
from .pamr import pamr_affinity, pamr_propagate
from .prompt_denoising import REMOVED_LOGIT, kept_classes, prompt_denoise
from .segmenter import Segmenter
from .sliding_window import slide
from .upsampling import upsample_argmax


class MaskCLIP(Segmenter):
    """MaskCLIP over ``classes``: a :class:`~maskclip_cli.core.vocabulary.ClassVocabulary`, or class
    specs (a name, or a list of synonyms named by the first, scoring the max over them) plus
    ``config.background``, the words of an optional merged background class with id 0.
    ``hook`` receives warnings (PAMR skipped on a photo too large for memory). ``backbones``: the
    frozen backbones the method needs beside CLIP (``{"proxy": LoadedProxy, "sam": LoadedProxy}``
    for ProxyCLIP and Trident; :func:`~maskclip_cli.engine.build.build_segmenter` loads them).
    """

    def __init__(
        self, clip: LoadedCLIP, classes: ClassVocabulary | Sequence[ClassSpec], config: MaskCLIPConfig | None = None,
        cache_dir: str | os.PathLike | None = None, hook: ProgressHook = SILENT, backbones: dict | None = None,
    ):
        self.clip, self.hook = clip, hook
        self.config = cfg = replace(config) if config else MaskCLIPConfig()  # a copy: defaults are filled in
        vocab = classes if isinstance(classes, ClassVocabulary) else ClassVocabulary.build(classes, cfg.background)
        if vocab.background != background_words(cfg.background):
            raise MaskCLIPError("The vocabulary's background words differ from the config's (which the record keeps).")
        if cfg.area_threshold is not None and not vocab.background:
            raise MaskCLIPError("The area threshold needs a background class (--background): small classes fall back to it.")
        self.vocabulary, self.class_names, self.synonyms = vocab, vocab.names, vocab.synonyms
        self.groups = torch.tensor(vocab.groups)
        self.backbones = dict(backbones or {})
        method = get_method(cfg.method)
        # inputs and windows are multiples of ``patch``; features come out every ``cell`` pixels (a proxy's patch)
        self.patch = self.cell = output_stride(clip.model.visual)
        if "proxy" in self.backbones:
            self.cell = self.backbones["proxy"].patch_size
            self.patch = math.lcm(self.patch, self.cell)
        self._slides = cfg.window is not None and not method.whole_image  # Trident crops the image itself
        # ``authors_code``: the authors' port of the tower and ImageNet statistics (engine/authors_code.py)
        self.visual = authors_port(clip.model.visual) if cfg.authors_code else clip.model.visual
        self.mean, self.std = (AUTHORS_MEAN, AUTHORS_STD) if cfg.authors_code else (clip.mean, clip.std)
        self.device = clip.device
        if cfg.short_side < self.patch:
            raise ParameterError(f"{{}} must be at least the model's patch size {self.patch} (got {cfg.short_side}).", "short_side")
        if cfg.window is not None:
            cfg.stride = cfg.stride or max(self.patch, cfg.window // 2 // self.patch * self.patch)
            if cfg.stride > cfg.window:
                raise ParameterError("{} must be at most {} (larger strides leave pixels uncovered).", "stride", "window")
            if cfg.window % self.patch or cfg.stride % self.patch:
                raise ParameterError(f"{{}} and {{}} must be multiples of the model's stride {self.patch}.", "window", "stride")
        # the method resolved and checked once
        self._dense = dense_encoder(self.visual, method, cfg.baseline, self.backbones, self.mean, self.std, beta=cfg.proxy_beta,
                                    gamma=cfg.proxy_gamma, window=cfg.window, stride=cfg.stride, refine_neg_cos=cfg.sam_refine_neg_cos)
        cache = None if cache_dir is None else Path(cache_dir)
        self.text = class_embeddings(clip, vocab.prompts, get_templates(cfg.templates), cache, hook).to(clip.device)

    # -- Segmenter interface -------------------------------------------------------------
    def resize(self, image: Image.Image) -> torch.Tensor:
        cfg = self.config
        if cfg.max_long_side is None:
            return resize_uint8(image, cfg.short_side, self.patch)
        return resize_uint8(image, box_short_side(*image.size, cfg.max_long_side, cfg.short_side), self.patch, cfg.max_long_side)

    def input_short_side(self) -> int | None:
        """The short side, or None under the box rule (its short side may be smaller: decode in full)."""
        return self.config.short_side if self.config.max_long_side is None else None

    @torch.no_grad()
    def scores(self, images: torch.Tensor) -> torch.Tensor:
        """On a GPU the image encoder runs in fp16; classification and refinement stay in fp32
        (softmax(100 * cosine) magnifies fp16 rounding of the cosines a hundredfold)."""
        on_gpu = images.device.type == "cuda"
        with torch.autocast(images.device.type, dtype=torch.float16, enabled=on_gpu):
            features, keys = self.encode(images)
        return self.refine(features.float(), keys.float())

    def record(self) -> LabelRecord:
        return LabelRecord(classes=list(self.class_names), clip=self.clip.source, inference=self.config.inference_record(),
                           synonyms=self.synonyms, backbones={k: BackboneSource(b.name, b.weights) for k, b in self.backbones.items()})

    # -- MaskCLIP steps --------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """L2-normalised dense features (B, D, h, w) and keys (B, K, h, w) on the image's patch grid.

        With a sliding window the per-window maps are averaged where windows overlap. Averaging
        unit features then taking cosines equals averaging the windows' logits.
        """
        cfg = self.config
        if not self._slides:
            feats, keys = self._dense(images)
            return F.normalize(feats.float(), dim=1), keys.float()

        def features_and_keys(crops: torch.Tensor) -> torch.Tensor:  # stacked on channels: one average for both
            feats, keys = self._dense(crops)
            return torch.cat([F.normalize(feats.float(), dim=1), keys.float()], dim=1)

        both = slide(images, cfg.window, cfg.stride, features_and_keys, self.cell)
        dim = self.text.shape[1]
        return both[:, :dim], both[:, dim:]

    def prompt_cosines(self, features: torch.Tensor) -> torch.Tensor:
        """Cosine logits (B, R, h, w) of unit features against every prompt (class words, synonyms)."""
        return torch.einsum("bdhw,rd->brhw", features, self.text.to(features))

    def class_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Cosine logits (B, C, h, w); a merged class takes the max over its words."""
        return reduce_groups(self.prompt_cosines(features), self.groups, len(self.class_names))

    def refine(self, features: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Class probabilities (B, C, h, w): logits, then prompt denoising, then key smoothing."""
        logits = self.class_logits(features)
        cfg = self.config
        if cfg.prompt_denoising:
            logits = prompt_denoise(logits, cfg.denoise_threshold, cfg.logit_scale)
        if cfg.key_smoothing and cfg.authors_code:
            return authors_key_smooth(logits, keys, cfg.logit_scale)
        if cfg.key_smoothing:
            return key_smooth(logits, keys, scale=cfg.logit_scale)
        return (cfg.logit_scale * logits).softmax(dim=1)

    # -- the logit path, PAMR and the area threshold ---------------------------------------------
    @torch.no_grad()
    def prompt_logits(self, images: torch.Tensor) -> torch.Tensor:
        """(B, R, h', w') cosine logits per prompt, prompt-denoised when on. Whole image: on the patch
        grid. Sliding window: each window's logits bilinearly upsampled to its pixels and averaged
        where windows overlap, at input resolution (SCLIP's and NACLIP's ``forward_slide``)."""
        cfg = self.config
        # on a GPU the encoder and the cosine einsum run in fp16 (the successors' protocol, which this path follows)
        with torch.autocast(images.device.type, dtype=torch.float16, enabled=images.device.type == "cuda"):
            if not self._slides:
                logits = self._cosines(images)
            else:
                logits = slide(images, cfg.window, cfg.stride, self._upsampled_cosines)
        if cfg.prompt_denoising:
            keep = kept_classes(reduce_groups(logits, self.groups, len(self.class_names)), cfg.denoise_threshold, cfg.logit_scale)
            logits = logits.masked_fill(~keep[:, self.groups.to(logits.device)][:, :, None, None], REMOVED_LOGIT)
        return logits

    def _cosines(self, images: torch.Tensor) -> torch.Tensor:
        """Cosine logits per prompt (B, R, h, w) on the patch grid."""
        return self.prompt_cosines(F.normalize(self._dense(images)[0].float(), dim=1))

    def _upsampled_cosines(self, crops: torch.Tensor) -> torch.Tensor:
        """A window's cosine logits bilinearly upsampled to its pixels."""
        return F.interpolate(self._cosines(crops), size=crops.shape[-2:], mode="bilinear", align_corners=False)

    @property
    def _logit_path(self) -> bool:
        return self.config.upsample_logits and not self.config.key_smoothing

    @property
    def _own_full_size(self) -> bool:
        """Whether full-size maps need more than upsampling the probabilities (Segmenter's default)."""
        return self._logit_path or self.config.pamr or self.config.area_threshold is not None

    def _low_res(self, images: torch.Tensor) -> torch.Tensor:
        return self.prompt_logits(images) if self._logit_path else self.scores(images)

    @torch.no_grad()
    def predict_device(self, images: torch.Tensor, sizes: list[tuple[int, int]]) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        if not self._own_full_size:
            return super().predict_device(images, sizes)
        low = self._low_res(images)
        maps = [self._full_size(low[i], images[i], (h, w), self._logit_path) for i, (w, h) in enumerate(sizes)]
        if self._logit_path:  # the class probabilities at the patch grid, as Prediction.scores holds them
            low = reduce_groups((self.config.logit_scale * low).softmax(dim=1), self.groups, len(self.class_names))
        return low, maps

    def _full_size(self, scores: torch.Tensor, image: torch.Tensor, size: tuple[int, int], logit_path: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Labels and confidence at ``size``: upsampled, PAMR-refined (guided by the input image
        resized to ``size``, as SCLIP and NACLIP do), small classes dropped by the area threshold."""
        cfg = self.config
        kw = {"logit_scale": cfg.logit_scale, "groups": self.groups} if logit_path else {}
        refine = None
        if cfg.pamr:
            try:
                guide = F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False)
                affinity = pamr_affinity(guide, cfg.pamr_dilations)
                refine = lambda up: pamr_propagate(up, affinity, cfg.pamr_iterations, cfg.pamr_dilations)  # noqa: E731
                labels, conf = upsample_argmax(scores, size, refine=refine, **kw)
            except RuntimeError as exc:  # out of memory on a very large photo: label it without PAMR
                self.hook.warn(f"PAMR skipped for a {size[1]}x{size[0]} image ({str(exc).splitlines()[0]}).")
                refine = None
        if refine is None:
            labels, conf = upsample_argmax(scores, size, **kw)
        if cfg.area_threshold is not None:
            drop = small_classes(labels, len(self.class_names), cfg.area_threshold)
            if drop[labels.int()].any():
                excluded = drop[self.groups] if logit_path else drop
                labels, conf = upsample_argmax(scores, size, refine=refine, excluded=excluded, **kw)
        return labels, conf


def small_classes(labels: torch.Tensor, n_classes: int, threshold: float) -> torch.Tensor:
    """(C,) bool: foreground classes (id > 0) whose pixels are at most ``threshold`` of all
    foreground pixels of the map (SCLIP's ``area_thd``); the background never is."""
    counts = torch.bincount(labels.flatten().int(), minlength=n_classes).float()
    drop = counts <= threshold * counts[1:].sum()
    drop[0] = False
    return drop
