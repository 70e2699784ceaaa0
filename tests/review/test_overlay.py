"""Overlays: exact blending, untouched ignore pixels, a legend, and both ways to make them."""

from __future__ import annotations

import json

import numpy as np
from label_folders import CLASS_NAMES, shapes_map, write_label_folder
from PIL import Image
from typer.testing import CliRunner

from maskclip_cli.cli import app
from maskclip_cli.formats.label_files import palette
from maskclip_cli.review.overlay import render_overlay

runner = CliRunner()


def test_render_blends_colours_and_leaves_ignore_pixels():
    rng = np.random.default_rng(1)
    photo = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    labels = np.full((60, 80), 255, np.uint8)
    labels[30:, :40] = 1
    labels[30:, 40:] = 2
    colours = palette(3)
    out = np.asarray(render_overlay(Image.fromarray(photo), labels, colours, CLASS_NAMES, alpha=0.4)).astype(float)
    expected = photo.astype(float)
    for c in (1, 2):
        m = labels == c
        expected[m] = 0.6 * photo[m] + 0.4 * np.asarray(colours[c], float)
    below_legend = slice(40, None)  # the legend sits in the top-left corner
    assert np.abs(out[below_legend] - expected[below_legend]).max() <= 0.5
    assert np.array_equal(out[:30, 50:], photo[:30, 50:])  # ignore pixels untouched
    legend = out[:30, :30].reshape(-1, 3)
    for c in (1, 2):  # a solid swatch of each class present
        assert (np.abs(legend - colours[c]).sum(1) == 0).any()


def test_overlay_command_on_existing_folder(tmp_path):
    images, labels = tmp_path / "images", tmp_path / "labels"
    maps = {"a.jpg": shapes_map(), "nested/b.png": shapes_map(50, 70)}
    write_label_folder(labels, images, maps, failed={"broken.jpg": "OSError: truncated"})
    result = runner.invoke(app, ["overlay", str(labels), "--images", str(images), "--no-progress"])
    assert result.exit_code == 0, result.output
    for source, m in maps.items():
        stem = source.rsplit(".", 1)[0]
        with Image.open(labels / "overlays" / f"{stem}.jpg") as img:
            assert img.format == "JPEG" and img.size == (m.shape[1], m.shape[0])
    (images / "a.jpg").write_bytes(b"not a jpeg")
    result = runner.invoke(app, ["overlay", str(labels), "--images", str(images), "--no-progress", "--overwrite"])
    assert result.exit_code == 1 and "a.jpg" in result.output
    assert runner.invoke(app, ["overlay", str(tmp_path / "nope"), "--images", str(images)]).exit_code == 2


def test_label_overlays_option(tmp_path):
    """`maskclip label --overlays` writes one overlay per image, of the image's size, also for
    images a previous run labelled without the option."""
    from conftest import TINY_CONFIGS

    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for rel, (w, h) in {"a.jpg": (64, 48), "sub/b.png": (40, 72)}.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(images / rel)
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY_CONFIGS["vit"]))
    out = images / "out"  # inside the input: its overlays must not be labelled as new images
    args = ["label", str(images), "--out", str(out), "--model", str(config), "--pretrained", "none", "--no-progress",
            "--workers", "0", "--short-side", "32", "--templates", "simple", "--classes", "cat,dog"]
    assert runner.invoke(app, args).exit_code == 0
    assert not (out / "overlays").exists()
    result = runner.invoke(app, [*args, "--overlays"])
    assert result.exit_code == 0, result.output
    assert "0 labelled, 2 skipped" in result.output
    for stem, size in {"a": (64, 48), "sub/b": (40, 72)}.items():
        with Image.open(out / "overlays" / f"{stem}.jpg") as img:
            assert img.size == size
    assert runner.invoke(app, ["report", str(out), "--no-progress"]).exit_code == 0
    assert (out / "report_files" / "thumbs").is_dir()  # thumbnails, inside the input: not new images
    assert "0 labelled, 2 skipped" in runner.invoke(app, args).output
    (out / "overlays" / "a.jpg").unlink()
    result = runner.invoke(app, [*args, "--overlays", "--overwrite"])
    assert result.exit_code == 0 and "2 labelled" in result.output
    assert (out / "overlays" / "a.jpg").is_file()
