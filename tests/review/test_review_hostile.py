"""Hostile label folders and outputs for report and overlay (issue 22): they never replace a file
that is not one of their own outputs, never write outside the label folder or read outside
--images, and a bad manifest field is one warning, not a traceback."""

from __future__ import annotations

import json

import numpy as np
import pytest
from label_folders import shapes_map, write_label_folder
from typer.testing import CliRunner

from maskclip_cli.cli import app

runner = CliRunner()


@pytest.fixture
def folder(tmp_path):
    write_label_folder(tmp_path / "labels", tmp_path / "images", {"a.jpg": shapes_map(30, 40), "b.jpg": shapes_map(30, 40)})
    return tmp_path


def rewrite(tmp_path, which, **changes):
    manifest = tmp_path / "labels/manifest.jsonl"
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    manifest.write_text("".join(json.dumps({**e, **changes} if e["source"] == which else e) + "\n" for e in lines))


def report(tmp_path, *extra):
    return runner.invoke(app, ["report", str(tmp_path / "labels"), "--no-progress", *extra])


def overlay(tmp_path, *extra):
    return runner.invoke(app, ["overlay", str(tmp_path / "labels"), "--images", str(tmp_path / "images"), "--no-progress", *extra])


@pytest.mark.parametrize("target", ["manifest.jsonl", "classes.json", "labels/a.png", "confidence/b.png"])
def test_report_refuses_to_replace_a_label_folder_file(folder, tmp_path, target):
    """Issue 22, data loss 3: `report --out LABELS/manifest.jsonl` overwrote it with HTML, exit 0."""
    path = tmp_path / "labels" / target
    before = path.read_bytes()
    result = report(tmp_path, "--out", str(path))
    assert result.exit_code == 2 and "is not a report written by maskclip" in result.output
    assert path.read_bytes() == before


def test_report_replaces_its_own_page(folder, tmp_path):
    assert report(tmp_path).exit_code == 0
    first = (tmp_path / "labels/report.html").read_text()
    assert report(tmp_path, "--max-images", "1").exit_code == 0
    assert (tmp_path / "labels/report.html").read_text() != first


def test_overlay_refuses_to_replace_a_file_that_is_not_an_overlay(folder, tmp_path):
    """Issue 22, data loss 3: overlay replaces only its own JPEGs; another file at an overlay's path
    is left as it is and the image is listed as failed (exit 1)."""
    mine = tmp_path / "labels/overlays/a.jpg"
    mine.parent.mkdir(parents=True)
    mine.write_text("my notes, not a JPEG")
    result = overlay(tmp_path, "--overwrite")
    assert result.exit_code == 1 and "is not an overlay written by maskclip" in result.output
    assert mine.read_text() == "my notes, not a JPEG"
    assert (tmp_path / "labels/overlays/b.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    assert overlay(tmp_path, "--overwrite").exit_code == 1  # its own b.jpg is replaced again, a.jpg still refused


@pytest.mark.parametrize("field, value", [("source", "../outside.jpg"), ("source", "/abs/outside.jpg"),
                                          ("label", "labels/../../x.png")])
def test_overlay_with_dotdot_or_absolute_paths_writes_nothing_outside(folder, tmp_path, field, value):
    """Issue 22, data loss 4: `..` in a manifest made overlay read and write outside its folders."""
    rewrite(tmp_path, "a.jpg", **{field: value})
    before = set(tmp_path.rglob("*"))
    result = overlay(tmp_path)
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    new = {p.relative_to(tmp_path).as_posix() for p in set(tmp_path.rglob("*")) - before}
    assert new == {"labels/overlays", "labels/overlays/b.jpg"}
    assert "skipped" in result.output and "warning" in result.output


@pytest.mark.parametrize("value", ["NaN", "Infinity", '"high"', "2"])
def test_report_with_nan_infinite_or_string_mean_confidence_is_no_traceback(folder, tmp_path, value):
    """Issue 22: report crashed on a mean_confidence NaN, Infinity or a string."""
    manifest = tmp_path / "labels/manifest.jsonl"
    lines = manifest.read_text().splitlines()
    first = json.loads(lines[0])
    lines[0] = json.dumps(first).replace(json.dumps(first["mean_confidence"]), value)
    manifest.write_text("\n".join(lines) + "\n")
    result = report(tmp_path)
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert "mean_confidence must be a number in [0, 1]" in result.output
    page = (tmp_path / "labels/report.html").read_text()
    assert "2 images: 1 labelled, 1 failed" in page


def test_report_with_maps_of_different_sizes_skips_the_image(folder, tmp_path):
    """Issue 22: label and confidence maps of different sizes were a traceback in report."""
    from maskclip_cli.formats.label_files import write_confidence

    write_confidence(tmp_path / "labels/confidence/a.png", np.zeros((31, 40), np.float32))
    result = report(tmp_path)
    assert result.exit_code == 0 and "maps of different sizes" in result.output
