"""Image -> model input: resize to a short side, snap to the feature stride, normalise."""

from __future__ import annotations

import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF


def snapped_size(width: int, height: int, short_side: int, stride: int) -> tuple[int, int]:
    """(width, height) scaled so the short side is ``short_side``, each rounded to a multiple of
    ``stride`` so every pixel falls in a whole patch (aspect changes by at most stride/2 pixels)."""
    scale = short_side / min(width, height)
    snap = lambda v: max(stride, int(round(v * scale / stride)) * stride)  # noqa: E731
    return snap(width), snap(height)


def to_model_input(
    image: Image.Image, short_side: int, stride: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    """(3, H', W') float tensor, bicubic-resized and normalised with the model's mean/std."""
    w, h = snapped_size(*image.size, short_side, stride)
    x = TF.to_image(image.convert("RGB"))
    x = TF.resize(x, [h, w], interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
    return TF.normalize(TF.to_dtype(x, torch.float32, scale=True), list(mean), list(std))
