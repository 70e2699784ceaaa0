"""Online MaskCLIP+ (paper §3.4, as the authors train it): a frozen CLIP labeller runs on each
augmented training crop in the same step as the network being trained.

The crop the network sees (resized, cropped, flipped, photometrically distorted, padded) is
renormalised from the network's input statistics to the labeller's, snapped to the labeller's
patch grid when its side is not a multiple of it, and labelled by a frozen MaskCLIP built from a
:class:`~maskclip_cli.engine.maskclip.MaskCLIPConfig` (any ``method`` and setting it supports)
through its device path ``full_size`` (no copy to the host): class scores upsampled bilinearly to the crop, then the arg-max (or
the logit path, PAMR, the area threshold, when its settings ask for them). Pixels below
``min_confidence`` and the crop's padding stay ignored. On a GPU the image encoder runs in fp16
(as in ``maskclip label``). Under torchrun each process builds its own labeller on its own GPU
and labels its own crops: nothing is communicated.

In zero-shot mode the labeller is built over the unseen classes only, as the authors'
``MaskClipPlusHead.assign_label`` restricts the text embeddings to ``clip_unlabeled_cats`` before
any refinement: unlabelled pixels take the best unseen class, and a seen class can never be given.

Deliberate differences from the authors' code: by default the labeller's probabilities (softmax,
or the key-smoothed scores) are upsampled, where the authors upsample the raw cosines when key
smoothing is off (``upsample_logits`` in the record gives their path); ``min_confidence`` is a
probability, where their ``conf_thresh`` compares cosines. The crop is scored as a whole (a
sliding window recorded for ``maskclip label`` is not used).
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Sequence

import torch
import torch.nn.functional as F

from ..clip.loading import LoadedCLIP
from ..core.constants import IGNORE_INDEX
from ..engine.build import build_segmenter
from ..engine.config import MaskCLIPConfig, backbone_fields, backbone_sources
from ..core.record import LabelRecord
from ..core.vocabulary import ClassSpec, ClassVocabulary


def labeller_config(record: LabelRecord) -> MaskCLIPConfig:
    """The :class:`MaskCLIPConfig` a record's inference settings and backbones (ProxyCLIP's proxy,
    Trident's SAM) describe, for whole-crop use (window and stride dropped: the crop is the unit
    online). Keys MaskCLIPConfig does not know are left out; every one it has (``method`` included)
    is taken over."""
    known = {f.name for f in fields(MaskCLIPConfig)}
    cfg = MaskCLIPConfig(**{k: v for k, v in record.inference.items() if k in known}, **backbone_fields(record.backbones))
    return replace(cfg, window=None, stride=None)


def labelling_record(classes: ClassVocabulary | Sequence[ClassSpec], config: MaskCLIPConfig) -> LabelRecord:
    """How to label ``classes`` online when there is no label folder: the class ids MaskCLIP gives
    them (a merged background first), their synonyms and ``config``; the CLIP is named when it is loaded."""
    vocab = classes if isinstance(classes, ClassVocabulary) else ClassVocabulary.build(classes, config.background)
    return LabelRecord(classes=vocab.names, clip=None, inference=config.inference_record(), synonyms=vocab.synonyms,
                       backbones=backbone_sources(config))


class OnlineLabeller:
    """Pseudo labels for a batch of augmented training crops, from a frozen MaskCLIP.

    ``classes`` are the training classes: a vocabulary, or the class names by id with ``synonyms``
    (extra words of a class, as recorded) and ``config.background``; with ``candidates`` (zero-shot:
    the unseen class names) only those can be assigned. ``input_mean``/``input_std`` are the
    statistics the crops were normalised with (the target network's); the labeller's own are its
    segmenter's.
    """

    def __init__(
        self, clip: LoadedCLIP, classes: ClassVocabulary | Sequence[str], config: MaskCLIPConfig,
        input_mean: tuple[float, ...], input_std: tuple[float, ...],
        candidates: list[str] | None = None, synonyms: dict[str, list[str]] | None = None,
    ):
        vocab = classes if isinstance(classes, ClassVocabulary) else ClassVocabulary.from_names(list(classes), config.background, synonyms)
        chosen = vocab.subset(candidates if candidates is not None else vocab.names,
                              "Labeller classes not among the training classes")
        crop_config = replace(config, background=list(chosen.background), window=None, stride=None,
                              area_threshold=config.area_threshold if chosen.background else None)
        self.segmenter = build_segmenter(chosen, crop_config, clip=clip)
        self.class_ids = torch.tensor(vocab.ids(chosen.names))
        self.vocabulary, self.class_names = vocab, vocab.names
        self._args = (clip, vocab, config, tuple(input_mean), tuple(input_std))
        self.device = clip.device
        self.patch = self.segmenter.patch
        # x_clip = x * a + b maps the target's normalisation to the labeller's
        m_in, s_in = torch.tensor(input_mean), torch.tensor(input_std)
        m_out, s_out = torch.tensor(self.segmenter.mean), torch.tensor(self.segmenter.std)
        self._scale = (s_in / s_out)[:, None, None]
        self._shift = ((m_in - m_out) / s_out)[:, None, None]

    def record(self) -> LabelRecord:
        """How this labeller labels (CLIP, settings, all training classes): saved in checkpoints, so a
        resumed run rebuilds the same labeller."""
        clip, vocab, config = self._args[:3]
        return LabelRecord(classes=vocab.names, clip=clip.source, inference=config.inference_record(), synonyms=vocab.synonyms,
                           backbones=self.segmenter.record().backbones)

    def restricted(self, candidates: list[str]) -> OnlineLabeller:
        """The same labeller (same CLIP, settings and classes) that can assign only ``candidates``."""
        return OnlineLabeller(*self._args, candidates=candidates)

    def clip_input(self, images: torch.Tensor) -> torch.Tensor:
        """Crops normalised for the target network -> the labeller's normalisation, sides snapped to the patch grid."""
        x = images.float() * self._scale.to(images.device) + self._shift.to(images.device)
        h, w = x.shape[-2:]
        sh, sw = (max(self.patch, round(v / self.patch) * self.patch) for v in (h, w))
        if (sh, sw) != (h, w):
            x = F.interpolate(x, size=(sh, sw), mode="bilinear", align_corners=False)
        return x

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, valid: torch.Tensor | None = None, min_confidence: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Pseudo labels (B, H, W) as training class ids and their confidence (B, H, W) for crops
        (B, 3, H, W); ignore below ``min_confidence`` and where ``valid`` is ignore (crop padding).
        The segmenter's device path (``full_size``) takes its scores to the crop's size (bilinear, then
        arg-max; the logit path, PAMR and the area threshold when its settings ask for them): nothing is
        copied to the host."""
        h, w = images.shape[-2:]
        maps = self.segmenter.full_size(self.clip_input(images).to(self.device), [(w, h)] * len(images))  # stays on the device
        labels = self.class_ids.to(self.device)[torch.stack([m[0] for m in maps]).long()]
        confidence = torch.stack([m[1] for m in maps]).float()
        drop = confidence < min_confidence
        if valid is not None:
            drop |= valid.to(drop.device) == IGNORE_INDEX
        return labels.masked_fill(drop, IGNORE_INDEX).to(images.device), confidence.to(images.device)
