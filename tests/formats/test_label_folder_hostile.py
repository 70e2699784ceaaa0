"""Label folders damaged or booby-trapped on their travels (issue 22, hostile pass): symlinks leading
out of the folder, classes.json with wrong types; one line or one failed image, nothing written outside."""

from __future__ import annotations

import json

import pytest
from label_folders import shapes_map, write_label_folder
from typer.testing import CliRunner

from maskclip_cli.cli import app
from maskclip_cli.core.errors import MaskCLIPError
from maskclip_cli.formats.image_entry import InvalidEntry, inside
from maskclip_cli.formats.label_folder import LabelFolder

runner = CliRunner()


@pytest.fixture
def folder(tmp_path):
    write_label_folder(tmp_path / "labels", tmp_path / "images", {"a.png": shapes_map(30, 40), "sub/b.png": shapes_map(30, 40)})
    (tmp_path / "elsewhere").mkdir()
    return tmp_path


def test_inside_refuses_a_symlink_out_of_the_root_unless_not_confined(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "secret.png").write_bytes(b"x")
    (tmp_path / "root/a.png").symlink_to(tmp_path / "secret.png")
    (tmp_path / "root/c.png").write_bytes(b"x")
    (tmp_path / "root/b.png").symlink_to("c.png")  # a link that stays inside is fine
    with pytest.raises(InvalidEntry, match="leads outside"):
        inside(tmp_path / "root", "a.png", "label")
    assert inside(tmp_path / "root", "b.png", "label") == tmp_path / "root/b.png"
    assert inside(tmp_path / "root", "a.png", "source", confine=False) == tmp_path / "root/a.png"


def test_label_map_symlinked_out_of_the_folder_is_a_failed_image(folder, tmp_path):
    (tmp_path / "elsewhere/secret.png").write_bytes((tmp_path / "labels/labels/a.png").read_bytes())
    (tmp_path / "labels/labels/a.png").unlink()
    (tmp_path / "labels/labels/a.png").symlink_to(tmp_path / "elsewhere/secret.png")
    result = runner.invoke(app, ["export", str(tmp_path / "labels"), "--format", "coco", "--out", str(tmp_path / "out"),
                                 "--no-progress"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    failed = [json.loads(line) for line in (tmp_path / "out/failed.jsonl").read_text().splitlines()]
    assert [f["source"] for f in failed] == ["a.png"] and "leads outside" in failed[0]["error"]


@pytest.mark.parametrize("sub", ["overlays", "report_files", "labels"])
def test_output_folder_symlinked_out_of_the_label_folder_is_refused(folder, tmp_path, sub):
    """overlays/ (or report_files/, labels/) -> /elsewhere made overlay and report write outside the
    folder the user named."""
    labels = tmp_path / "labels"
    if sub == "labels":
        (labels / "labels").rename(tmp_path / "elsewhere/labels")
        (labels / "labels").symlink_to(tmp_path / "elsewhere/labels")
    else:
        (labels / sub).symlink_to(tmp_path / "elsewhere")
    before = sorted((tmp_path / "elsewhere").rglob("*"))
    for args in (["overlay", str(labels), "--images", str(tmp_path / "images")], ["report", str(labels)]):
        result = runner.invoke(app, [*args, "--no-progress"])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert "leads outside" in " ".join(result.output.split())
    assert sorted((tmp_path / "elsewhere").rglob("*")) == before


def test_overlay_subfolder_symlinked_out_is_a_failed_image(folder, tmp_path):
    labels = tmp_path / "labels"
    (labels / "overlays").mkdir()
    (labels / "overlays/sub").symlink_to(tmp_path / "elsewhere")
    result = runner.invoke(app, ["overlay", str(labels), "--images", str(tmp_path / "images"), "--no-progress"])
    assert result.exit_code == 1 and "leads outside" in result.output
    assert list((tmp_path / "elsewhere").iterdir()) == [] and (labels / "overlays/a.jpg").is_file()


@pytest.mark.parametrize("classes, message", [
    ([{"id": 0, "name": {"a": 1}}], "a class name must be a non-empty string"),
    ([{"id": 0, "name": " "}], "a class name must be a non-empty string"),
    ([{"id": 0, "name": "cat"}, {"id": 1, "name": "cat"}], "class names must be unique"),
    ("cat", "is not a valid classes.json"),
    ([{"id": 0, "name": "cat"}, {"id": "1", "name": "dog"}], "is not a valid classes.json"),
])
def test_classes_json_with_wrong_types_is_one_line(folder, tmp_path, classes, message):
    """A dict as a class name became its repr in CVAT's labelmap and COCO's categories."""
    path = tmp_path / "labels/classes.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "classes": classes}))
    with pytest.raises(MaskCLIPError, match=message):
        LabelFolder.open(tmp_path / "labels")
    result = runner.invoke(app, ["export", str(tmp_path / "labels"), "--format", "cvat-mask", "--out", str(tmp_path / "o"),
                                 "--no-progress"])
    assert result.exit_code == 2 and "Traceback" not in result.output and not (tmp_path / "o").exists()


def test_label_folder_that_is_a_file_says_so(tmp_path):
    (tmp_path / "labels").write_text("x")
    with pytest.raises(MaskCLIPError, match="a file, not a folder"):
        LabelFolder.open(tmp_path / "labels")


def test_a_source_longer_than_a_path_is_invalid_and_not_echoed(folder, tmp_path):
    """A 5-MB `source` became a failed entry whose name flooded the terminal and failed.jsonl."""
    with open(tmp_path / "labels/manifest.jsonl", "a") as f:
        f.write(json.dumps({"source": "a" * 100_000, "status": "error", "error": "x"}) + "\n")
    result = runner.invoke(app, ["export", str(tmp_path / "labels"), "--format", "coco", "--out", str(tmp_path / "out"),
                                 "--no-progress"])
    assert result.exit_code == 0, result.output[:2000]
    assert "100000 characters long" in " ".join(result.output.split()) and len(result.output) < 5000
