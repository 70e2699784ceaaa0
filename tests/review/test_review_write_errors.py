"""Report and overlay into folders that refuse writes (issue 22): one line, exit 2, no traceback, and
no page or overlay left half-written."""

from __future__ import annotations

import numpy as np
import pytest
from label_folders import shapes_map, write_label_folder
from typer.testing import CliRunner
from write_errors import read_only, small_disk

from maskclip_cli.cli import app

runner = CliRunner()


@pytest.fixture
def folder(tmp_path):
    write_label_folder(tmp_path / "labels", tmp_path / "images", {f"{n}.png": shapes_map(60, 80) for n in "abc"})
    return tmp_path


def errors(result) -> list[str]:
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return [line for line in result.output.splitlines() if line.startswith("error:")]


def test_report_into_a_read_only_label_folder_is_one_error(folder, tmp_path):
    labels = tmp_path / "labels"
    with read_only(labels):
        result = runner.invoke(app, ["report", str(labels), "--no-progress"])
    assert len(errors(result)) == 1 and "Cannot write" in result.output
    assert not (labels / "report.html").exists()


def test_report_into_a_read_only_label_folder_prints_only_one_line(folder, tmp_path):
    labels = tmp_path / "labels"
    with read_only(labels):
        result = runner.invoke(app, ["report", str(labels), "--no-progress"])
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1, result.output


@pytest.mark.parametrize("where", ["label folder", "out"])
def test_overlay_into_a_read_only_folder_is_one_line(folder, tmp_path, where):
    labels = tmp_path / "labels"
    if where == "out":
        (labels / "overlays").mkdir()
    with read_only(labels if where == "label folder" else labels / "overlays"):
        result = runner.invoke(app, ["overlay", str(labels), "--images", str(tmp_path / "images"), "--no-progress"])
    assert errors(result) == [line for line in result.output.splitlines() if line.strip()]
    assert "Cannot write overlays into" in result.output
    assert not list(labels.rglob("*.jpg")) and not list(labels.rglob("*.tmp"))


def test_overlay_onto_a_full_disk_is_one_line(folder, tmp_path):
    """The label folder fits (flat confidences compress to nothing); the noise photos' overlays do not."""
    maps = {f"{n}.png": shapes_map(200, 300) for n in "abcdef"}
    with small_disk(tmp_path / "disk", 64) as disk:
        labels = disk / "labels"
        write_label_folder(labels, None, maps, confidences={k: np.full((200, 300), 0.5, np.float32) for k in maps})
        write_label_folder(tmp_path / "unused", tmp_path / "photos", maps)
        result = runner.invoke(app, ["overlay", str(labels), "--images", str(tmp_path / "photos"), "--no-progress"])
        assert len(errors(result)) == 1 and "No space left on device" in result.output
        assert not list(labels.rglob("*.tmp"))


def test_report_and_overlay_say_shard_parts_are_unmerged(folder, tmp_path):
    """Issue 22: report read only manifest.jsonl, ignoring unmerged shard parts without a hint."""
    labels = tmp_path / "labels"
    lines = (labels / "manifest.jsonl").read_text().splitlines(keepends=True)
    (labels / "manifest.jsonl").write_text(lines[0])
    (labels / "manifest.shard-1-of-3.jsonl").write_text("".join(lines[1:]))
    for args in (["report", str(labels)], ["overlay", str(labels), "--images", str(tmp_path / "images")]):
        result = runner.invoke(app, [*args, "--no-progress"])
        text = " ".join(result.output.split())
        assert result.exit_code == 0, text
        assert "1 shard part(s) of the manifest are not merged (manifest.shard-1-of-3.jsonl)" in text
    assert "3 images" in runner.invoke(app, ["report", str(labels), "--no-progress"]).output
    assert len(list((labels / "overlays").glob("*.jpg"))) == 3
