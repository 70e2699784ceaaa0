"""Parts of `--engine ray` that need no Ray: the missing-extra message, option parsing, the refusal
of shards and the model-free resize shipped to decode tasks (they run where Ray is not installed)."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
import torch
from conftest import make_tiny_clip
from labelling.helpers import make_images, tiny_segmenter
from PIL import Image
from typer.testing import CliRunner

from maskclip_cli.cli import app
from maskclip_cli.core.errors import MaskCLIPError
from maskclip_cli.engine.maskclip import MaskCLIP, MaskCLIPConfig
from maskclip_cli.labelling.label_job import LabelOptions
from maskclip_cli.labelling.ray_engine import _input_resize, _serialise, label_with_ray
from maskclip_cli.labelling.ray_options import parse_actors
from maskclip_cli.synthetic.assets import CHECKPOINT, MODEL_CONFIG

runner = CliRunner()


def test_without_ray_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    images = make_images(tmp_path / "images")
    result = runner.invoke(app, ["label", str(images), "--out", str(tmp_path / "out"), "--model", str(MODEL_CONFIG),
                                 "--checkpoint", str(CHECKPOINT), "--classes", "cat,dog", "--engine", "ray"])
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "pip install 'maskclip-cli[ray]'" in errors[0], result.output
    assert not (tmp_path / "out").exists()


def test_ray_refuses_shards(tmp_path):
    images = make_images(tmp_path / "images", {"a.png": (32, 32)})
    with pytest.raises(MaskCLIPError, match="drop --shard"):
        label_with_ray(tiny_segmenter(), images, tmp_path / "out", LabelOptions(shard=(0, 2)))


@pytest.mark.parametrize("spec, bounds", [("3", (3, 3)), ("1-8", (1, 8))])
def test_parse_actors(spec, bounds):
    assert parse_actors(spec) == bounds


@pytest.mark.parametrize("spec", ["0", "4-2", "x", "1-"])
def test_parse_actors_refuses(spec):
    with pytest.raises(MaskCLIPError, match="actors"):
        parse_actors(spec)


def test_input_resize_is_the_segmenters():
    """The model-free resize shipped to decode tasks gives the segmenter's own inputs."""
    segmenter = tiny_segmenter()
    resize = _input_resize(segmenter)
    assert resize is not None
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (71, 113, 3), dtype=np.uint8))
    assert np.array_equal(resize(image).numpy(), segmenter.resize(image).numpy())


def _proxy() -> dict:
    import timm

    from maskclip_cli.clip.proxy.backbone import LoadedProxy
    from maskclip_cli.core.record import WeightsSource

    dino = timm.create_model("vit_small_patch16_224.dino", pretrained=False, depth=1, dynamic_img_size=True).eval()
    return {"proxy": LoadedProxy(dino, "vit_small_patch16_224.dino", WeightsSource("random"), (0.485, 0.456, 0.406),
                                 (0.229, 0.224, 0.225))}


@pytest.mark.parametrize("tower, method", [("vit", "maskclip"), ("resnet", "maskclip"), ("vit", "proxyclip")])
def test_segmenter_ships_to_actors(tower, method):
    """The bytes an actor loads give the driver's segmenter (a proxy backbone included): the same
    probabilities, bit for bit."""
    backbones = _proxy() if method == "proxyclip" else None
    segmenter = MaskCLIP(make_tiny_clip(tower), ["cat", "dog"], MaskCLIPConfig(method=method, templates="simple", short_side=32),
                         backbones=backbones)
    shipped = torch.load(io.BytesIO(_serialise(segmenter)), map_location="cpu", weights_only=False)
    images = segmenter.normalise(torch.randint(0, 256, (2, 3, 32, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(shipped.scores(images), segmenter.scores(images))
