"""What every segmenter (MaskCLIP, or a trained MaskCLIP+ network) offers the pipelines.

A segmenter turns a PIL image into a model input (:meth:`Segmenter.resize` to a uint8 tensor, then
:meth:`Segmenter.normalise`, which may run on the device), a batch of inputs into class probabilities at
its own resolution, and describes how it labels as a :class:`~maskclip_cli.core.record.LabelRecord` (written into
classes.json, compared on resume).
Label and confidence maps at the original size come from :meth:`Segmenter.predict_device` (on the
device) and :meth:`Segmenter.predict` (copied to the host).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..clip.preprocess import normalise
from ..core.record import LabelRecord
from .upsampling import upsample_argmax


@dataclass
class Prediction:
    """One image's result: labels (H, W) int64, confidence (H, W) float32 in [0, 1], and the
    per-class probabilities (C, h, w) at the segmenter's own resolution."""

    labels: np.ndarray
    confidence: np.ndarray
    scores: torch.Tensor


class Segmenter:
    class_names: list[str]
    device: torch.device
    mean: tuple[float, ...]  # the input normalisation
    std: tuple[float, ...]

    def resize(self, image: Image.Image) -> torch.Tensor:
        """(3, H', W') uint8 input for one image, before normalisation."""
        raise NotImplementedError

    def input_short_side(self) -> int | None:
        """Short side of the model input: larger images may be decoded at a reduced scale down to
        it (formats.images); None when the full resolution is needed."""
        return None

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 inputs from :meth:`resize` (on any device) -> the model's float input."""
        return normalise(images, self.mean, self.std)

    def prepare(self, image: Image.Image) -> torch.Tensor:
        """(3, H', W') normalised input for one image."""
        return self.normalise(self.resize(image))

    def scores(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) class probabilities for a batch of same-sized inputs."""
        raise NotImplementedError

    def record(self) -> LabelRecord:
        """Everything that changes the output; equal records mean reusable outputs."""
        raise NotImplementedError

    def settings(self) -> dict:
        """The record as JSON-ready values (as written into classes.json and eval's --json)."""
        return self.record().to_dict()

    @torch.no_grad()
    def predict_device(self, images: torch.Tensor, sizes: list[tuple[int, int]]) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """The device path of :meth:`predict`: ``(probabilities (B, C, h, w) at the segmenter's own
        resolution, per image (labels int16, confidence float) at its original (width, height))``,
        nothing copied to the host. Segmenters that refine at full size override this."""
        probs = self.scores(images)
        return probs, [upsample_argmax(p, (h, w)) for p, (w, h) in zip(probs, sizes)]

    def full_size(self, images: torch.Tensor, sizes: list[tuple[int, int]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per image, (labels, confidence) at its original (width, height), left on the device (the
        label job post-processes them there; the online labeller trains on them)."""
        return self.predict_device(images, sizes)[1]

    def predict(self, images: torch.Tensor, sizes: list[tuple[int, int]]) -> list[Prediction]:
        """Label a batch of same-sized inputs; ``sizes`` are the original (width, height). A thin host-side
        wrapper over :meth:`predict_device` (segment-anything's ``predict`` over ``predict_torch``)."""
        probs, maps = self.predict_device(images, sizes)
        return [Prediction(labels.long().cpu().numpy(), conf.cpu().numpy().astype(np.float32), p.cpu())
                for p, (labels, conf) in zip(probs, maps)]

    def label_image(self, image: Image.Image) -> Prediction:
        """Label one PIL image at its original size."""
        return self.predict(self.prepare(image)[None].to(self.device), [image.size])[0]
