"""Export's write errors and silent cases (issue 22): a read-only or full --out is one line and exit 2
with no index file written; photos of another size and label ids beyond the class list are warned
per image and counted; unmerged shard parts and mixed settings are named."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from label_folders import shapes_map, write_label_folder
from PIL import Image
from typer.testing import CliRunner
from write_errors import read_only, small_disk

from maskclip_cli.cli import app
from maskclip_cli.core.record import record_hash
from maskclip_cli.formats.label_files import palette, write_label_png
from maskclip_cli.formats.label_folder import LabelFolder

runner = CliRunner()
FORMATS = ("coco", "yolo-seg", "cvat-mask", "hf")  # label-studio takes no --images
INDEX = {"coco": "annotations/instances_train.json", "yolo-seg": "data.yaml", "cvat-mask": "labelmap.txt", "hf": "README.md"}


@pytest.fixture
def folder(tmp_path):
    maps = {f"{name}.png": shapes_map(60, 80) for name in "abcdef"}
    write_label_folder(tmp_path / "labels", tmp_path / "images", maps)
    return tmp_path


def export(tmp_path, fmt, out, *extra):
    return runner.invoke(app, ["export", str(tmp_path / "labels"), "--format", fmt, "--out", str(out),
                               "--images", str(tmp_path / "images"), "--no-progress", *extra])


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    return " ".join(result.output.split())


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_into_an_existing_read_only_out_is_one_line(folder, tmp_path, fmt):
    out = tmp_path / "out"
    out.mkdir()
    with read_only(out):
        message = one_error_line(export(tmp_path, fmt, out))
    assert f"Cannot write the export into {out}" in message
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_overwrite_into_a_read_only_out_is_one_line_and_deletes_nothing(folder, tmp_path, fmt):
    out = tmp_path / "out"
    assert export(tmp_path, fmt, out).exit_code == 0
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    with read_only(out):
        message = one_error_line(export(tmp_path, fmt, out, "--overwrite"))
    assert f"Cannot write into --out {out}" in message
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


@pytest.mark.parametrize("fmt", ["yolo-seg", "cvat-mask"])
def test_export_onto_a_full_disk_is_one_line_and_writes_no_index(folder, tmp_path, fmt):
    """Disk full half way: exit 2, one line, and no index file, so the partial export does not look
    complete (a per-image failure list would have hidden the cause)."""
    with small_disk(tmp_path / "disk", 48) as disk:
        message = one_error_line(export(tmp_path, fmt, disk / "out"))
        assert "No space left on device" in message and "incomplete" in message
        assert not (disk / "out" / INDEX[fmt]).exists()
        assert not list((disk / "out").rglob("*.part"))


def test_photo_of_another_size_is_warned_once_per_image_and_counted(folder, tmp_path):
    """Issue 22: photos of another size than the label maps exported with no warning."""
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "images/b.png")
    Image.fromarray(np.zeros((120, 160, 3), np.uint8)).save(tmp_path / "images/d.png")
    result = export(tmp_path, "coco", tmp_path / "out")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "b.png: the photo is 40x30 but its label map 80x60" in text
    assert "d.png: the photo is 160x120 but its label map 80x60" in text
    assert "a.png: the photo" not in text
    assert "2 exported image(s) with a warning" in text


def test_label_ids_beyond_the_class_list_are_warned(folder, tmp_path):
    """Issue 22: label ids beyond the class list were dropped without a word."""
    labels = shapes_map(60, 80)
    labels[:5, :5] = 7
    labels[-5:, -5:] = 255  # ignore: not a warning
    write_label_png(tmp_path / "labels/labels/c.png", labels, palette(3))
    manifest = tmp_path / "labels/manifest.jsonl"
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    for line in lines:
        line.pop("label_bytes", None)
    manifest.write_text("".join(json.dumps(e) + "\n" for e in lines))
    result = export(tmp_path, "yolo-seg", tmp_path / "out")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "c.png: label id(s) 7 beyond the 3 classes of classes.json" in text
    assert text.count("beyond the 3 classes") == 1 and "1 exported image(s) with a warning" in text


def test_export_says_shard_parts_are_unmerged_and_reads_them(folder, tmp_path):
    """Issue 22: export and report read only manifest.jsonl, ignoring unmerged shard parts without a
    hint. The one reader reads the parts; export names them and says how to merge."""
    labels = tmp_path / "labels"
    lines = (labels / "manifest.jsonl").read_text().splitlines(keepends=True)
    (labels / "manifest.jsonl").unlink()
    (labels / "manifest.shard-0-of-2.jsonl").write_text("".join(lines[:3]))
    (labels / "manifest.shard-1-of-2.jsonl").write_text("".join(lines[3:]))
    result = export(tmp_path, "coco", tmp_path / "out")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "2 shard part(s) of the manifest are not merged" in text and f"maskclip label --merge {labels}" in text
    assert "6 exported" in text


def test_export_warns_about_entries_of_other_settings(folder, tmp_path):
    """A folder relabelled with other settings by only some shards (--shard K/N --overwrite): the
    entries still tagged with the old settings are counted."""
    labels = tmp_path / "labels"
    current = record_hash(LabelFolder.open(labels).record)
    lines = [json.loads(line) for line in (labels / "manifest.jsonl").read_text().splitlines()]
    for i, line in enumerate(lines):
        line["settings"] = current if i < 4 else "0123456789abcdef"
    (labels / "manifest.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
    result = export(tmp_path, "cvat-mask", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "2 of 6 images were labelled with other settings than classes.json" in " ".join(result.output.split())
    shutil.rmtree(tmp_path / "out")
    for line in lines:
        line["settings"] = "0123456789abcdef"  # one tag, not the current hash (an older version's folder)
    (labels / "manifest.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
    assert "other settings" not in export(tmp_path, "cvat-mask", tmp_path / "out").output


def test_overwrite_removes_a_symlinked_output_folder_not_what_it_points_to(folder, tmp_path):
    """`--overwrite` with out/labels -> /elsewhere: rmtree refused the link with a traceback (and a
    recursive delete through it would have emptied /elsewhere). The link goes, its target stays."""
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.txt").write_text("mine")
    out.mkdir()
    (out / ".maskclip-export").write_text("{}")  # an earlier export of ours
    (out / "labels").symlink_to(elsewhere)
    result = export(tmp_path, "yolo-seg", out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert (elsewhere / "precious.txt").read_text() == "mine" and sorted(p.name for p in elsewhere.iterdir()) == ["precious.txt"]
    assert not (out / "labels").is_symlink() and (out / "labels/train/a.txt").is_file()
