"""Image -> model input: resize to a short side, snap to the feature stride, normalise.

The number of tokens per image is bounded: the long side is capped at ``MAX_ASPECT`` times the
short side (MMSegmentation's (2048, 512) keep-ratio rule at the default short side 512), so an
extreme aspect ratio (a 4000x10 strip) is shrunk to fit rather than blown up to millions of
patches; such an image then has a short side below ``short_side`` (at least one stride).

Resizing and normalising are separate steps so the label job can resize in its DataLoader workers
(uint8, a quarter of float32's bytes to pass between processes) and normalise on the device;
``to_model_input`` composes them and gives the same tensor bit for bit.
"""

from __future__ import annotations

import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

MAX_ASPECT = 4  # the long side of a model input is at most this many times its short side


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Starts of windows of ``window`` px every ``stride`` px covering ``length``; the last one is
    pushed back to end exactly at ``length``. A short axis gets one window starting at 0."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


def snapped_size(width: int, height: int, short_side: int, stride: int, max_long_side: int | None = None) -> tuple[int, int]:
    """(width, height) scaled so the short side is ``short_side`` -- or less, where the long side would
    then exceed ``max_long_side`` (default ``MAX_ASPECT * short_side``) -- each rounded to a multiple
    of ``stride`` so every pixel falls in a whole patch (aspect changes by at most stride/2 pixels).

    The patch grid thus holds at most about ``MAX_ASPECT * (short_side / stride) ** 2`` tokens."""
    long_cap = max_long_side if max_long_side is not None else MAX_ASPECT * short_side
    scale = min(short_side / min(width, height), long_cap / max(width, height))
    snap = lambda v: max(stride, int(round(v * scale / stride)) * stride)  # noqa: E731
    return snap(width), snap(height)


def fit_scale(width: int, height: int, max_long: int, max_short: int) -> float:
    """MMSegmentation's keep-ratio rescale factor: long side <= max_long and short side <= max_short."""
    return min(max_long / max(width, height), max_short / min(width, height))


def box_short_side(width: int, height: int, max_long: int, max_short: int) -> int:
    """The short side (in pixels) of an image rescaled by :func:`fit_scale` (the eval protocols' box rule)."""
    return round(min(width, height) * fit_scale(width, height, max_long, max_short))


def resize_uint8(image: Image.Image, short_side: int, stride: int, max_long_side: int | None = None) -> torch.Tensor:
    """(3, H', W') uint8 tensor, bicubic-resized (antialiased) to :func:`snapped_size`."""
    w, h = snapped_size(*image.size, short_side, stride, max_long_side)
    x = TF.to_image(image.convert("RGB"))
    return TF.resize(x, [h, w], interpolation=TF.InterpolationMode.BICUBIC, antialias=True)


def normalise(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 images (..., 3, H, W), on any device -> float32 scaled to [0, 1] and normalised."""
    return TF.normalize(TF.to_dtype(images, torch.float32, scale=True), list(mean), list(std))


def to_model_input(
    image: Image.Image, short_side: int, stride: int, mean: tuple[float, ...], std: tuple[float, ...],
    max_long_side: int | None = None,
) -> torch.Tensor:
    """(3, H', W') float tensor, bicubic-resized (see :func:`snapped_size`) and normalised with the model's mean/std."""
    return normalise(resize_uint8(image, short_side, stride, max_long_side), mean, std)
