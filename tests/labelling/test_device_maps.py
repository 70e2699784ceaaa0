"""Device-side post-processing against an independent CPU reference, and the uint8 input path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from maskclip_cli.clip.preprocess import normalise, resize_uint8, to_model_input
from maskclip_cli.engine.upsampling import upsample_argmax
from maskclip_cli.labelling.device_maps import device_maps

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _reference(probs: np.ndarray, size: tuple[int, int], min_confidence: float | None):
    """Written apart from the library: all classes upsampled at once in float64, arg-max, 0-255."""
    up = F.interpolate(torch.from_numpy(probs)[None].double(), size=size, mode="bilinear", align_corners=False)[0].numpy()
    labels = up.argmax(0).astype(np.uint8)
    conf = np.clip(up.max(0), 0, 1)
    if min_confidence is not None:
        labels[conf < min_confidence] = 255
    return labels, conf


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("min_confidence", [None, 0.3])
def test_device_maps_equal_the_cpu_reference(device, min_confidence):
    """Labels identical, 8-bit confidence within one quantisation step, float16 confidence within
    float16 rounding, classes present and mean confidence as the reference computes them, for
    images of different sizes (and more classes than one upsampling chunk) in one batch."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 40, 7, 9)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    sizes = [(61, 47), (9, 7), (130, 95)]  # (width, height)
    batch = torch.from_numpy(probs).float().to(device)
    for half in (False, True):
        maps = device_maps([upsample_argmax(p, (h, w)) for p, (w, h) in zip(batch, sizes)], min_confidence, half)
        assert len(maps) == 3
        for i, (w, h) in enumerate(sizes):
            labels, conf = _reference(probs[i].astype(np.float32), (h, w), min_confidence)
            got = maps.image(i)
            assert got.labels.dtype == np.uint8 and got.labels.shape == (h, w)
            assert np.array_equal(got.labels, labels)
            if half:
                assert got.confidence.dtype == np.float16
                assert np.abs(got.confidence.astype(np.float64) - conf).max() <= 1e-3
            else:
                assert got.confidence.dtype == np.uint8
                assert np.abs(got.confidence.astype(np.float64) - conf * 255).max() <= 1.0
            assert got.classes_present == sorted(set(np.unique(labels).tolist()) - {255})
            assert got.mean_confidence == pytest.approx(conf.mean(), rel=1e-5)


def test_uint8_resize_then_normalise_equals_the_float_input():
    """Workers send uint8; normalising on the device gives the float input bit for bit."""
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (37, 53, 3), dtype=np.uint8))
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    small = resize_uint8(image, 32, 8)
    assert small.dtype == torch.uint8 and small.shape == (3, 32, 48)
    assert torch.equal(normalise(small[None], mean, std)[0], to_model_input(image, 32, 8, mean, std))
    expected = (small.double() / 255 - torch.tensor(mean, dtype=torch.float64)[:, None, None]) / torch.tensor(std, dtype=torch.float64)[:, None, None]
    assert (normalise(small, mean, std).double() - expected).abs().max() < 1e-5


@pytest.mark.parametrize("config", [
    {"pamr": True},
    {"key_smoothing": False, "upsample_logits": True},
    {"background": ["sky"], "area_threshold": 0.3},
])
def test_label_job_keeps_full_size_refinements(tmp_path, config):
    """PAMR, the logit path and the area threshold work at the original size: the label job's maps
    (through Segmenter.full_size) equal Segmenter.label_image's for every image."""
    from helpers import SIZES, make_images
    from conftest import make_tiny_clip
    from maskclip_cli.engine.maskclip import MaskCLIP, MaskCLIPConfig
    from maskclip_cli.labelling.label_job import LabelOptions, label_folder

    images = make_images(tmp_path / "images")
    seg = MaskCLIP(make_tiny_clip("vit"), ["cat", "dog", "tree"], MaskCLIPConfig(templates="simple", short_side=32, **config))
    label_folder(seg, images, tmp_path / "out", LabelOptions(workers=0, batch_size=3))
    for rel in SIZES:
        with Image.open(images / rel) as im:
            pred = seg.label_image(im.convert("RGB"))
        stem = rel.rsplit(".", 1)[0]
        assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "labels" / f"{stem}.png")), pred.labels)
        conf = np.asarray(Image.open(tmp_path / "out" / "confidence" / f"{stem}.png"), dtype=float)
        assert np.abs(conf - pred.confidence * 255).max() <= 1.0
