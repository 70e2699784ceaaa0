"""`train --online` and the 8-bit class limit (issue 22): more than 255 classes are refused before any
model is loaded or checkpoint written, as `label` refuses them, so no checkpoint exists that
`label --segmenter` and `eval` would then refuse."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from maskclip_cli.cli import app


@pytest.mark.parametrize("extra", [0, 1])
def test_train_online_with_more_than_255_classes_is_refused_before_a_checkpoint(tmp_path, monkeypatch, extra):
    import maskclip_cli.clip.loading as loading

    monkeypatch.setattr(loading, "load_clip", lambda *a, **k: pytest.fail("the model was loaded"))
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(images / "a.png")
    names = [f"class{i}" for i in range(255 + extra)]
    background = ["--background", "sky"] if not extra else []  # 255 classes + the merged background: 256
    result = CliRunner().invoke(app, ["train", "--images", str(images), "--out", str(tmp_path / "run"), "--online",
                                      "--classes", ",".join(names), *background, "--iters", "1", "--device", "cpu",
                                      "--no-progress"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "256 classes given; at most 255" in " ".join(result.output.split())
    assert not (tmp_path / "run").exists()
