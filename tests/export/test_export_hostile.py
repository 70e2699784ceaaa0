"""Hostile label folders and outputs (issue 22): nothing deleted, overwritten or written outside
--out, nothing copied from outside --images; options a format does not take are refused (issue 17)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from label_folders import shapes_map, write_label_folder
from PIL import Image
from typer.testing import CliRunner

from maskclip_cli.cli import app
from maskclip_cli.formats.label_files import PNG_COMPRESSION, palette, png_settings

runner = CliRunner()
FORMATS = {"coco": [], "yolo-seg": [], "cvat-mask": [], "hf": []}  # label-studio takes no --images


@pytest.fixture
def folder(tmp_path):
    write_label_folder(tmp_path / "labels", tmp_path / "images", {"a.jpg": shapes_map(30, 40), "b.jpg": shapes_map(30, 40)})
    return tmp_path


def export(tmp_path, fmt, *extra, out="out"):
    args = ["export", str(tmp_path / "labels"), "--format", fmt, "--out", str(tmp_path / out), "--no-progress",
            "--images", str(tmp_path / "images"), *extra]
    return runner.invoke(app, args)


def rewrite(tmp_path, which, **changes):
    manifest = tmp_path / "labels/manifest.jsonl"
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    lines = [{**e, **changes} if e["source"] == which else e for e in lines]
    manifest.write_text("".join(json.dumps(e) + "\n" for e in lines))


def files_outside(tmp_path, before):
    return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")
                  if p.is_file() and p not in before and "out" not in p.relative_to(tmp_path).parts)


def test_absolute_source_does_not_delete_the_file_on_coco_export(folder, tmp_path):
    """Issue 22, data loss 1: the photo "copy" target was the absolute path itself, unlinked first."""
    victim = tmp_path / "precious.jpg"
    victim.write_bytes(b"my photo")
    rewrite(tmp_path, "a.jpg", source=str(victim))
    result = export(tmp_path, "coco", "--val-fraction", "0")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert victim.read_bytes() == b"my photo"
    failed = [json.loads(line) for line in (tmp_path / "out/failed.jsonl").read_text().splitlines()]
    assert failed[0]["source"] == str(victim) and "absolute path" in failed[0]["error"]
    assert json.loads((tmp_path / "out/annotations/instances_train.json").read_text())["images"][0]["file_name"] == "b.jpg"


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("field, value", [
    ("label", "labels/../../outside.png"), ("confidence", "confidence/../../outside.png"),
    ("source", "../outside.jpg"), ("source", "../images/../outside.jpg"),
])
def test_dotdot_in_label_confidence_or_source_writes_nothing_outside_out(folder, tmp_path, fmt, field, value):
    """Issue 22, data loss 4: `..` made cvat-mask and yolo-seg write outside --out and coco copy
    photos from outside --images. Now the entry fails with the reason and nothing leaves --out."""
    (tmp_path / "outside.jpg").write_bytes(b"not yours")
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "outside.png")
    before = set(tmp_path.rglob("*"))
    rewrite(tmp_path, "a.jpg", **{field: value})
    result = export(tmp_path, fmt)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "climbs out of its folder" in result.output
    assert files_outside(tmp_path, before) == []
    assert (tmp_path / "outside.jpg").read_bytes() == b"not yours"
    copied = [p for p in (tmp_path / "out").rglob("*.jpg")]
    assert all(p.name == "b.jpg" for p in copied)


@pytest.mark.parametrize("where", ["labels", "labels/labels", ".", "images", "images/sub"])
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_overwrite_refuses_out_that_is_contains_or_lies_inside_label_or_images_folder(folder, tmp_path, where, fmt):
    """Issue 22, data loss 2: --overwrite with --out = the label folder (or the parent of --images)
    deleted labels/ (or the photos)."""
    (tmp_path / "images/sub").mkdir()
    (tmp_path / "images/sub/keep.txt").write_text("x")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    result = export(tmp_path, fmt, "--overwrite", out=where)
    assert result.exit_code == 2 and "choose a folder outside it" in result.output, result.output
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_overwrite_still_replaces_an_export_beside_the_inputs(folder, tmp_path):
    assert export(tmp_path, "cvat-mask").exit_code == 0
    assert export(tmp_path, "cvat-mask", "--overwrite").exit_code == 0


@pytest.mark.parametrize("fmt, option", [
    ("coco", ["--image-root-url", "/x"]), ("coco", ["--min-area", "4"]), ("cvat-mask", ["--seed", "3"]),
    ("yolo-seg", ["--instances"]), ("cvat-mask", ["--instances"]), ("cvat-mask", ["--min-area", "4"]),
])
def test_options_the_format_does_not_take_are_refused(folder, tmp_path, fmt, option):
    """Issue 17: as Ultralytics' export table, each format declares its options; others are refused
    in one line with exit 2 (they were silently ignored), before anything is written."""
    result = export(tmp_path, fmt, *option)
    assert result.exit_code == 2 and f"{option[0]} is not an option of --format {fmt}" in result.output
    assert not (tmp_path / "out").exists()


def test_options_the_format_takes_are_accepted(folder, tmp_path):
    assert export(tmp_path, "coco", "--instances", "--exclude", "cat", out="c").exit_code == 0
    assert export(tmp_path, "yolo-seg", "--min-area", "4", "--val-fraction", "0.5", "--seed", "2", out="y").exit_code == 0


def test_all_garbage_manifest_is_refused_not_0_of_0(folder, tmp_path):
    """Issue 22: an all-garbage manifest exported "0 of 0", exit 0."""
    (tmp_path / "labels/manifest.jsonl").write_text("garbage\n[1]\n")
    result = export(tmp_path, "coco")
    assert result.exit_code == 2 and "no image entries in its manifest (2 invalid line(s))" in result.output


def test_cvat_masks_use_the_one_png_compression_default(folder, tmp_path):
    """Issue 17: the CVAT writer silently used zlib level 6; every writer now uses PNG_COMPRESSION."""
    assert export(tmp_path, "cvat-mask").exit_code == 0
    written = tmp_path / "out/SegmentationClass/a.png"
    with Image.open(written) as img:
        again = tmp_path / "again.png"
        img.save(again, format="PNG", **png_settings(PNG_COMPRESSION))
        level6 = tmp_path / "level6.png"
        img.save(level6, format="PNG", **png_settings(6))
    assert written.read_bytes() == again.read_bytes() != level6.read_bytes()
    assert np.array_equal(np.asarray(Image.open(written)), shapes_map(30, 40) + 0)  # class 0 is background
    assert Image.open(written).getpalette()[:6] == [v for c in palette(2) for v in c]
