"""The review report: figures on the page match the label maps, sampling bounds the work, and a
real browser (headless Chromium) renders it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from label_folders import shapes_map, write_label_folder
from PIL import Image
from typer.testing import CliRunner

from maskclip_cli.cli import app
from maskclip_cli.formats.label_files import palette

runner = CliRunner()
CHROMIUM = Path("/usr/bin/chromium")


def make_folder(tmp_path, n=6, failed=None):
    maps, confs = {}, {}
    for i in range(n):
        labels = shapes_map(60, 80)
        labels[:, : i * 5] = 255  # differing ignore strips
        maps[f"img{i}.jpg"] = labels
        confs[f"img{i}.jpg"] = np.full(labels.shape, (i + 1) / (n + 1), np.float32)
    write_label_folder(tmp_path / "labels", tmp_path / "images", maps, confs, failed=failed)
    return maps, confs


def section(page, title):
    return page.split(f"<h2>{title}")[1].split("<h2>")[0]


def test_report_figures_match_the_label_maps(tmp_path):
    maps, confs = make_folder(tmp_path, failed={"broken.jpg": "UnidentifiedImageError: cannot identify <img>"})
    out = tmp_path / "review/report.html"
    result = runner.invoke(app, ["report", str(tmp_path / "labels"), "--images", str(tmp_path / "images"),
                                 "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert "<script" not in page
    assert "7 images: 6 labelled, 1 failed; 3 classes" in page
    assert "UnidentifiedImageError: cannot identify &lt;img&gt;" in section(page, "Failed images")
    assert "<th>templates</th><td>simple</td>" in page
    stacked = np.concatenate([m.ravel() for m in maps.values()])
    shares = [float(s) for s in re.findall(r"<td class=num>([\d.]+)%</td>", section(page, "Classes"))]
    expected = np.bincount(stacked[stacked < 3], minlength=3) / (stacked < 3).sum() * 100
    assert shares == pytest.approx(expected, abs=0.051)
    conf_cells = re.findall(r"<td class=num>(0\.\d{3})</td>", section(page, "Classes"))
    pixels = {c: sum(((m == c) * np.round(confs[s] * 255) / 255).sum() for s, m in maps.items()) for c in range(3)}
    counts = {c: sum((m == c).sum() for m in maps.values()) for c in range(3)}
    assert [float(v) for v in conf_cells] == pytest.approx([pixels[c] / counts[c] for c in range(3)], abs=6e-4)
    lowest = re.findall(r'alt="(img\d)\.jpg"', section(page, "Lowest confidence first"))
    assert lowest == [f"img{i}" for i in range(6)]  # lowest mean confidence first
    for link, thumb in re.findall(r'<a href="([^"]+)"><img src="([^"]+)"', page):
        assert (out.parent / link).is_file() and (out.parent / thumb).is_file()
        assert link.endswith(".jpg")  # full-size overlays drawn from the photos


def test_report_samples_large_folders(tmp_path):
    make_folder(tmp_path, n=30)
    result = runner.invoke(app, ["report", str(tmp_path / "labels"), "--max-images", "10", "--no-progress"])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "labels/report.html").read_text()
    assert "a random sample of 10 of 30 labelled images" in page
    thumbs = list((tmp_path / "labels/report_files/thumbs").iterdir())
    assert 10 <= len(thumbs) <= 12  # the sample plus the two lowest-confidence images
    assert len(re.findall(r'alt="img\d+\.jpg"', section(page, "Lowest confidence first"))) == 2
    assert runner.invoke(app, ["report", str(tmp_path / "labels"), "--max-images", "0"]).exit_code == 2
    assert runner.invoke(app, ["report", str(tmp_path / "images")]).exit_code == 2


@pytest.mark.skipif(not CHROMIUM.exists(), reason="headless Chromium not installed (apt-get install chromium); .ci/run installs it")
def test_chromium_renders_the_report(tmp_path):
    make_folder(tmp_path)
    out = tmp_path / "report.html"
    assert runner.invoke(app, ["report", str(tmp_path / "labels"), "--images", str(tmp_path / "images"),
                               "--out", str(out), "--no-progress"]).exit_code == 0
    shot = tmp_path / "shot.png"
    subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1200,1600", f"--screenshot={shot}", out.as_uri()],
                   check=True, capture_output=True, timeout=120, cwd=tmp_path)
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape == (1600, 1200, 3)
    flat = pixels.reshape(-1, 3)
    assert (flat != 255).any(1).mean() > 0.05  # not a blank page
    colours = {tuple(c) for c in np.unique(flat, axis=0)}
    assert len(colours) > 500  # text, bars and photo thumbnails, not an error page
    for c in palette(3)[1:]:  # the cat and dog bars are drawn in their label colours
        assert tuple(c) in colours


def test_report_out_inside_the_photo_folder(tmp_path):
    """`report LABELS --out PHOTOS/review.html --images PHOTOS` put review_files/*.png thumbnails among
    the photos: the next `maskclip label PHOTOS` labelled them (8 extra "images" out of 4 photos)."""
    make_folder(tmp_path, n=2)
    images = tmp_path / "images"
    before = sorted(p.relative_to(images) for p in images.rglob("*"))
    result = runner.invoke(app, ["report", str(tmp_path / "labels"), "--out", str(images / "sub/review.html"),
                                 "--images", str(images), "--no-progress"])
    assert result.exit_code == 2 and "inside the photo folder" in result.output and result.output.count("\n") == 1, result.output
    assert sorted(p.relative_to(images) for p in images.rglob("*")) == before
    # a label folder kept inside the photos (`maskclip label . --out labels`) may hold its report
    write_label_folder(images / "labels", images, {"img0.jpg": shapes_map(60, 80)})
    result = runner.invoke(app, ["report", str(images / "labels"), "--out", str(images / "labels/report.html"),
                                 "--images", str(images), "--no-progress"])
    assert result.exit_code == 0, result.output
