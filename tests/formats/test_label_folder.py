"""The label-folder layout: paths, classes.json parsing, and confidence maps in both formats."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from maskclip_cli.core.errors import MaskCLIPError
from maskclip_cli.formats.label_files import palette, write_confidence, write_label_png
from maskclip_cli.formats.label_folder import LabelFolder, read_confidence
from maskclip_cli.core.record import ClipSource, LabelRecord, WeightsSource
from maskclip_cli.training.augment import AugmentConfig
from maskclip_cli.training.pseudo_label_dataset import PseudoLabelDataset, find_samples


def _record(fmt: str = "png") -> LabelRecord:
    return LabelRecord(["a", "b"], ClipSource("tiny", WeightsSource("random")), confidence_format=fmt)


def test_layout_paths_and_classes_json(tmp_path):
    folder = LabelFolder(tmp_path)
    folder.write_classes(_record("npy"))
    doc = json.loads((tmp_path / "classes.json").read_text())
    assert [c["name"] for c in doc["classes"]] == ["a", "b"] and doc["ignore_index"] == 255
    assert doc["classes"][1]["color"] == palette(2)[1]
    again = LabelFolder.open(tmp_path)
    assert again.record == _record("npy") and again.class_names == ["a", "b"]
    assert again.label_path("x/y") == tmp_path / "labels" / "x/y.png"
    assert again.confidence_path("x/y") == tmp_path / "confidence" / "x/y.npy"
    assert again.overlay_path("x/y") == tmp_path / "overlays" / "x/y.jpg"


@pytest.mark.parametrize("doc, message", [
    (None, "not a label folder"),
    ("{not json", "not a valid classes.json"),
    ({"classes": [{"id": 1, "name": "a"}]}, "class ids must be 0..0"),
    ({"classes": [{"id": 0, "name": "a"}], "ignore_index": 0}, "ignore_index must be 255"),
    ({"classes": 5}, "not a valid classes.json"),
])
def test_a_bad_classes_json_is_one_clear_error(tmp_path, doc, message):
    if doc is not None:
        (tmp_path / "classes.json").write_text(doc if isinstance(doc, str) else json.dumps(doc))
    with pytest.raises(MaskCLIPError, match=message):
        LabelFolder.open(tmp_path)


@pytest.mark.parametrize("fmt", ["png", "npy"])
def test_min_confidence_reads_either_confidence_format(tmp_path, fmt):
    """Issue 8 bug: labels made with --confidence-format npy were trained with --min-confidence
    silently ignored (only confidence/<stem>.png was looked for)."""
    (tmp_path / "img").mkdir()
    Image.new("RGB", (8, 6)).save(tmp_path / "img" / "a.png")
    folder = LabelFolder(tmp_path / "labels")
    folder.write_classes(_record(fmt))
    write_label_png(folder.label_path("a"), np.ones((6, 8), np.uint8), palette(2))
    conf = np.full((6, 8), 0.9, np.float32)
    conf[:, :3] = 0.2
    write_confidence(folder.confidence_path("a"), conf)
    samples, _ = find_samples(tmp_path / "img", LabelFolder.open(tmp_path / "labels"))
    assert samples[0].confidence == folder.confidence_path("a")
    np.testing.assert_allclose(read_confidence(samples[0].confidence), conf, atol=1 / 255)
    _, pseudo, _ = PseudoLabelDataset(samples, 2, AugmentConfig(crop_size=8), min_confidence=0.5).load(0)
    assert (pseudo[:, :3] == 255).all() and (pseudo[:, 3:] == 1).all()


@pytest.mark.parametrize("command", [["export", "-f", "coco", "-o", "{tmp}/out", "--no-progress"], ["report", "--out", "{tmp}/r.html"]])
def test_classes_json_with_an_empty_class_list(tmp_path, command):
    """`"classes": []` opened as a folder of no classes: export said "--exclude leaves out every class"
    (no --exclude given) and report wrote a page of 0 sampled images; now one line naming the file."""
    from label_folders import shapes_map, write_label_folder
    from typer.testing import CliRunner

    from maskclip_cli.cli import app

    write_label_folder(tmp_path / "labels", None, {"a.jpg": shapes_map(30, 40)})
    doc = json.loads((tmp_path / "labels/classes.json").read_text())
    (tmp_path / "labels/classes.json").write_text(json.dumps({**doc, "classes": []}))
    args = [command[0], str(tmp_path / "labels"), *(a.format(tmp=tmp_path) for a in command[1:])]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "the class list is empty" in result.output and result.output.count("\n") == 1, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels"]
