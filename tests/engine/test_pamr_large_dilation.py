"""PAMR with dilations larger than the image (issue 22): `--pamr-dilations 30000` made every image
"PAMR skipped" (replicate padding of 30000 pixels per side ran out of memory) while the record said
PAMR was on. Past the border replicate padding only repeats it, so a dilation over a side acts as
side - 1 there: refined exactly as the reference, in the memory of the image."""

from __future__ import annotations

import numpy as np
import torch
from conftest import make_tiny_clip
from PIL import Image
from test_pamr import reference_pamr

from maskclip_cli.core.hooks import ProgressHook
from maskclip_cli.engine.maskclip import MaskCLIP, MaskCLIPConfig
from maskclip_cli.engine.pamr import pamr


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def test_pamr_dilation_larger_than_the_image_matches_the_reference():
    g = torch.Generator().manual_seed(0)
    image, scores = torch.rand(2, 3, 12, 17, generator=g), torch.rand(2, 4, 6, 9, generator=g)
    got = pamr(image, scores, 3, (40, 2), class_chunk=3)
    assert rel_err(got, reference_pamr(image, scores, 3, (40, 2))) < 1e-5
    assert rel_err(pamr(image, scores, 3, (30000, 2)), got) < 1e-6


class Warnings(ProgressHook):
    def __init__(self):
        self.messages: list[str] = []

    def warn(self, message: str) -> None:
        self.messages.append(message)


def test_pamr_dilations_30000_on_small_images_refines_them():
    """No "PAMR skipped"; the labels equal those of a dilation at the image's long side."""
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8))
    config = dict(templates="simple", short_side=32, pamr=True)
    hook = Warnings()
    seg = MaskCLIP(make_tiny_clip("vit"), ["cat", "dog"], MaskCLIPConfig(**config, pamr_dilations=(30000,)), hook=hook)
    huge = seg.label_image(photo)
    assert hook.messages == []
    side = MaskCLIP(make_tiny_clip("vit"), ["cat", "dog"], MaskCLIPConfig(**config, pamr_dilations=(55,)))
    assert np.array_equal(huge.labels, side.label_image(photo).labels)
