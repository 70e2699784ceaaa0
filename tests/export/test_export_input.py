"""Bad input to `maskclip export`: one line, exit 2, nothing written; and no non-finite numbers in
what is written."""

from __future__ import annotations

import json

import numpy as np
import pytest
from label_folders import record_with_machine_paths, shapes_map, with_npy_confidence, write_label_folder
from test_export import export, folder  # noqa: F401 (fixture)


@pytest.mark.parametrize("fmt, extra, says", [
    ("yolo-seg", ["--instances"], "--instances is not an option of --format yolo-seg"),
    ("coco", ["--image-root-url", "/data/local-files/?d=x"], "--image-root-url is not an option of --format coco"),
    ("label-studio", ["--images", "IMAGES", "--image-root-url", "/x"], "--images is not an option of --format label-studio"),
    ("hf", ["--images", "IMAGES", "--min-area", "5"], "--min-area is not an option of --format hf"),
    ("cvat-mask", ["--val-fraction", "0.3"], "--val-fraction is not an option of --format cvat-mask"),
])
def test_options_that_do_not_apply(folder, fmt, extra, says):
    tmp_path, _ = folder
    extra = [str(tmp_path / "images") if e == "IMAGES" else e for e in extra]
    result = export(tmp_path, fmt, *extra)
    assert result.exit_code == 2 and says in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("out", ["labels/exports", "images/coco", ".", "labels"])
def test_out_inside_or_around_the_input(folder, out):
    tmp_path, _ = folder
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = export(tmp_path, "coco", "--images", str(tmp_path / "images"), "--overwrite", out=out)
    assert result.exit_code == 2 and "choose a folder outside it" in result.output
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_cvat_refuses_names_labelmap_cannot_hold(tmp_path):
    write_label_folder(tmp_path / "labels", None, {"x.jpg": shapes_map()}, class_names=["background", "cat:tabby", "dog"])
    result = export(tmp_path, "cvat-mask")
    assert result.exit_code == 2 and "'cat:tabby'" in result.output and not (tmp_path / "out").exists()
    assert export(tmp_path, "coco", out="c").exit_code == 0  # COCO names it fine


def test_damaged_label_folder(folder):
    tmp_path, _ = folder
    (tmp_path / "labels/classes.json").write_text("{not json")
    result = export(tmp_path, "hf", "--images", str(tmp_path / "images"))
    assert result.exit_code == 2 and "classes.json" in result.output and not (tmp_path / "out").exists()


def test_coco_writes_no_nan_score(tmp_path):
    labels = shapes_map(40, 50)
    conf = np.full(labels.shape, 0.5, np.float32)
    conf[labels == 1] = np.nan  # a damaged .npy map
    write_label_folder(tmp_path / "labels", None, {"x.jpg": labels})
    with_npy_confidence(tmp_path / "labels", "x", conf)
    assert export(tmp_path, "coco", "--val-fraction", "0").exit_code == 0
    text = (tmp_path / "out/annotations/instances_train.json").read_text()
    assert "NaN" not in text
    scores = {a["category_id"]: a.get("score") for a in json.loads(text)["annotations"]}
    assert scores == {1: 0.5, 2: None}  # background, cat (no dog at this size)


def test_coco_info_and_hf_card_hold_no_absolute_paths(tmp_path, monkeypatch):
    """Issue 22: COCO's info.settings copied the record's absolute checkpoint and model paths."""
    from maskclip_cli.formats.label_folder import LabelFolder

    write_label_folder(tmp_path / "labels", tmp_path / "images", {"x.jpg": shapes_map()})
    LabelFolder(tmp_path / "labels").write_classes(record_with_machine_paths(["background", "cat", "dog"]))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert export(tmp_path, "coco", "--val-fraction", "0").exit_code == 0
    text = (tmp_path / "out/annotations/instances_train.json").read_text()
    assert "/home/someone" not in text and str(tmp_path).lstrip("/") not in text
    settings = json.loads(text)["info"]["settings"]
    assert settings["network"]["checkpoint"] == "ckpt.pt" and settings["clip"]["weights"]["path"] == "w.pt"
    assert settings["clip"]["model"] == "local-dir:clip" and settings["network"]["sha256"] == "cd" * 8
    assert export(tmp_path, "hf", "--images", str(tmp_path / "images"), out="hf").exit_code == 0
    card = (tmp_path / "hf/README.md").read_text()
    assert "/home/someone" not in card and "local-dir:clip" in card
