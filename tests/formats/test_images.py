"""How an image file becomes RGB uint8 (issue 9, defects 2, 3 and 16)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from maskclip_cli.formats.images import ImageDecodeError, read_rgb


def test_16_bit_greyscale_is_scaled_by_its_range_not_clipped(tmp_path):
    """A 0-65535 gradient: convert("RGB") made 99.6 % of it 255; it must stay a gradient."""
    values = np.linspace(0, 65535, 64 * 256).reshape(64, 256).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "g.png")
    rgb = np.asarray(read_rgb(tmp_path / "g.png").image)
    assert rgb.dtype == np.uint8 and rgb.shape == (64, 256, 3)
    np.testing.assert_array_equal(rgb[..., 0], np.round(values / 257.0).astype(np.uint8))
    assert (rgb[..., 0] == 255).mean() < 0.01


def test_float_images_in_unit_range_and_beyond(tmp_path):
    unit = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    Image.fromarray(unit).save(tmp_path / "u.tif")
    np.testing.assert_array_equal(np.asarray(read_rgb(tmp_path / "u.tif").image)[..., 1], np.round(unit * 255).astype(np.uint8))
    wide = np.linspace(-3, 7, 32 * 32, dtype=np.float32).reshape(32, 32)
    Image.fromarray(wide).save(tmp_path / "w.tif")
    grey = np.asarray(read_rgb(tmp_path / "w.tif").image)[..., 0]
    assert grey.min() == 0 and grey.max() == 255 and np.all(np.diff(grey.ravel().astype(int)) >= 0)


def test_float_image_without_finite_pixels_is_an_error(tmp_path):
    Image.fromarray(np.full((8, 8), np.nan, np.float32)).save(tmp_path / "n.tif")
    with pytest.raises(ImageDecodeError, match="finite"):
        read_rgb(tmp_path / "n.tif")


def _rotated_jpeg(path, orientation: int = 6, size=(320, 240)):
    pixels = np.zeros((size[1], size[0], 3), np.uint8)
    pixels[: size[1] // 2] = (255, 0, 0)  # top half red in the stored array
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, exif=exif.tobytes(), quality=95)


def test_exif_orientation_is_applied_by_default(tmp_path):
    """Orientation 6: stored 320x240, shown (and read by OpenCV and exif_transpose) as 240x320."""
    _rotated_jpeg(tmp_path / "r.jpg")
    shown = read_rgb(tmp_path / "r.jpg")
    assert shown.size == (240, 320) and shown.image.size == (240, 320)
    assert np.asarray(shown.image)[:, -1, 0].mean() > 200  # the stored top is now on the right
    raw = read_rgb(tmp_path / "r.jpg", exif=False)
    assert raw.size == (320, 240) and raw.image.size == (320, 240)


def test_large_jpeg_is_decoded_at_a_reduced_scale(tmp_path):
    """A 4000x3000 JPEG for a model input of short side 512 is decoded at 1/4 (1000x750), the
    full size still reported; without a target it is decoded whole."""
    Image.new("RGB", (4000, 3000), (10, 200, 30)).save(tmp_path / "big.jpg")
    small = read_rgb(tmp_path / "big.jpg", min_short_side=512)
    assert small.size == (4000, 3000) and small.image.size == (1000, 750)
    assert read_rgb(tmp_path / "big.jpg").image.size == (4000, 3000)
    rotated = tmp_path / "big-rot.jpg"
    _rotated_jpeg(rotated, 6, (4000, 3000))
    decoded = read_rgb(rotated, min_short_side=512)
    assert decoded.size == (3000, 4000) and decoded.image.size == (750, 1000)


@pytest.mark.parametrize("ignore", [False, True])
def test_label_follows_the_orientation_and_records_it(tmp_path, ignore):
    """label: the map has the shown size (240x320) and classes.json records exif; --ignore-exif keeps 320x240."""
    from conftest import TINY_CONFIGS
    from typer.testing import CliRunner

    from maskclip_cli.cli import app

    (tmp_path / "in").mkdir()
    _rotated_jpeg(tmp_path / "in" / "r.jpg")
    Image.fromarray(np.linspace(0, 65535, 64 * 96).reshape(64, 96).astype(np.uint16)).save(tmp_path / "in" / "g16.png")
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY_CONFIGS["vit"]))
    out = tmp_path / "out"
    args = ["label", str(tmp_path / "in"), "--classes", "cat,dog", "--out", str(out), "--model", str(config),
            "--pretrained", "none", "--no-progress", "--workers", "0", "--short-side", "32", "--templates", "simple"]
    result = CliRunner().invoke(app, args + (["--ignore-exif"] if ignore else []))
    assert result.exit_code == 0, result.output
    with Image.open(out / "labels" / "r.png") as labels:
        assert labels.size == ((320, 240) if ignore else (240, 320))
    assert json.loads((out / "classes.json").read_text())["settings"]["exif"] is (not ignore)
