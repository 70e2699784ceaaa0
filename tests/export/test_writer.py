"""export/writer.py: the options every format shares (here: --exclude), refused before anything is written."""

from __future__ import annotations

import pytest
from label_folders import CLASS_NAMES, shapes_map, write_label_folder
from typer.testing import CliRunner

from maskclip_cli.cli import app

runner = CliRunner()


@pytest.mark.parametrize("fmt", ["coco", "yolo-seg", "cvat-mask", "hf", "label-studio"])
def test_exclude_every_class(tmp_path, fmt):
    """`--exclude` naming every class exported 4 images with no category / no label at all, exit 0."""
    write_label_folder(tmp_path / "labels", tmp_path / "images", {"a.jpg": shapes_map(30, 40)})
    where = ["--image-root-url", "/data/local-files/?d=p"] if fmt == "label-studio" else ["--images", str(tmp_path / "images")]
    result = runner.invoke(app, ["export", str(tmp_path / "labels"), "-f", fmt, "-o", str(tmp_path / "out"), "--no-progress",
                                 *where, "--exclude", ",".join(CLASS_NAMES)])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert "--exclude leaves out every class" in result.output
    assert not (tmp_path / "out").exists()
