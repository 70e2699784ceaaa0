"""The report can be shared: no absolute path of the machine that made it, and the class colours on
the page and in the overlays are classes.json's."""

from __future__ import annotations

import json
import re

import numpy as np
from label_folders import record_with_machine_paths, shapes_map, write_label_folder
from PIL import Image
from typer.testing import CliRunner

from maskclip_cli.cli import app
from maskclip_cli.formats.label_folder import LabelFolder
from maskclip_cli.review.overlay import render_overlay

runner = CliRunner()


def test_no_absolute_paths_and_classes_json_colours(tmp_path, monkeypatch):
    maps = {f"img{i}.jpg": shapes_map(60, 80) for i in range(3)}
    write_label_folder(tmp_path / "labels", tmp_path / "images", maps, class_names=["background", "cat", "dog", "sky"],
                       failed={"sub/broken.jpg": f"Cannot read {tmp_path}/images/sub/broken.jpg: OSError: truncated"})
    record = record_with_machine_paths(["background", "cat", "dog", "sky"])
    LabelFolder(tmp_path / "labels").write_classes(record)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # the folders are not under the working directory
    page_path = tmp_path / "labels/report.html"
    result = runner.invoke(app, ["report", str(tmp_path / "labels"), "--images", str(tmp_path / "images"), "--no-progress"])
    assert result.exit_code == 0, result.output
    page = page_path.read_text()
    assert str(tmp_path).lstrip("/") not in page and "/home/someone" not in page
    assert "<h1>maskclip report: labels</h1>" in page and "ckpt.pt" in page and "local-dir:clip" in page
    assert "Cannot read sub/broken.jpg: OSError: truncated" in page
    monkeypatch.chdir(tmp_path)  # inside the working directory: shown relative to it
    assert runner.invoke(app, ["report", str(tmp_path / "labels"), "--no-progress", "-o", "r.html"]).exit_code == 0
    assert "<h1>maskclip report: labels</h1>" in (tmp_path / "r.html").read_text()

    colours = [tuple(c["color"]) for c in json.loads((tmp_path / "labels/classes.json").read_text())["classes"]]
    swatches = re.findall(r'class="sw" style="background:rgb(\(\d+, \d+, \d+\))"', page)
    assert [tuple(int(v) for v in s.strip("()").split(",")) for s in swatches[:4]] == colours  # the classes table
    label_png = Image.open(tmp_path / "labels/labels/img0.png")
    assert [tuple(label_png.getpalette()[3 * i: 3 * i + 3]) for i in range(4)] == colours
    labels = maps["img0.jpg"]
    photo = Image.fromarray(np.full((*labels.shape, 3), 100, np.uint8))
    overlay = np.asarray(render_overlay(photo, labels, LabelFolder.open(tmp_path / "labels").colours,
                                        record.classes, alpha=1.0, legend=False))
    for c in np.unique(labels):
        assert (overlay[labels == c] == colours[c]).all()
