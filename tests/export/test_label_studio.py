"""Label Studio export, read back by label-studio-sdk: every prediction validates against the written
labelling config (the SDK's LabelInterface), and the brush RLE decodes (the SDK's decode_rle) to the
label map's pixels exactly; without the SDK the format is refused with the install line."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from importers import run_check
from label_folders import CLASS_NAMES, shapes_map, write_label_folder
from test_export import conf_of, export, folder, random_map  # noqa: F401 (fixture)

# runs where label-studio-sdk is installed: the export, then the SDK's own checks; masks -> npz
CHECK = r"""
import json, sys
import numpy as np
from typer.testing import CliRunner
from label_studio_sdk.converter.brush import decode_rle
from label_studio_sdk.label_interface import LabelInterface
from maskclip_cli.cli import app

labels_dir, out, npz, *extra = sys.argv[1:]
result = CliRunner().invoke(app, ["export", labels_dir, "-f", "label-studio", "-o", out, "--no-progress", *extra])
assert result.exit_code in (0, 1), result.output
interface = LabelInterface(open(out + "/label_config.xml", encoding="utf-8").read())
tasks = json.load(open(out + "/tasks.json", encoding="utf-8"))
masks, summary = {}, []
for k, task in enumerate(tasks):
    (prediction,) = task["predictions"]
    summary.append({"url": task["data"]["image"], "errors": interface.validate_prediction(prediction, return_errors=True),
                    "score": prediction.get("score"), "model_version": prediction["model_version"],
                    "classes": [r["value"]["brushlabels"][0] for r in prediction["result"]]})
    for r in prediction["result"]:
        h, w = r["original_height"], r["original_width"]
        masks[f"{k}/{r['value']['brushlabels'][0]}"] = decode_rle(r["value"]["rle"]).reshape(h, w, 4)[:, :, 3] > 0
np.savez(npz, **masks)
print(json.dumps({"exit_code": result.exit_code, "tasks": summary}))
"""


def test_tasks_decode_to_label_maps(folder):
    tmp_path, maps = folder
    url = "/data/local-files/?d=photos/set 1"
    report = run_check("label_studio_sdk", CHECK, str(tmp_path / "labels"), str(tmp_path / "out"),
                       str(tmp_path / "masks.npz"), "--image-root-url", url)
    assert report["exit_code"] == 1  # bad.jpg is skipped
    masks = np.load(tmp_path / "masks.npz")
    assert [t["url"] for t in report["tasks"]] == [
        "/data/local-files/?d=photos/set%201/a.jpg", "/data/local-files/?d=photos/set%201/c.jpg",
        "/data/local-files/?d=photos/set%201/nested/b.png"]  # sorted by source: a, c, nested/b
    sources = ["a.jpg", "c.jpg", "nested/b.png"]
    for k, (source, task) in enumerate(zip(sources, report["tasks"])):
        labels = maps[source]
        assert task["errors"] == []  # the SDK's validation against label_config.xml
        assert task["model_version"].startswith("maskclip-")
        painted = np.full(labels.shape, 255, np.uint8)
        for name in task["classes"]:
            m = masks[f"{k}/{name}"]
            assert not (painted[m] != 255).any()
            painted[m] = CLASS_NAMES.index(name)
        assert np.array_equal(painted, labels), source  # the RLE round trip is exact
        assert task["classes"] == [CLASS_NAMES[c] for c in np.unique(labels) if c != 255]
        conf = conf_of(tmp_path, source)
        assert task["score"] == pytest.approx(conf[labels != 255].mean(), abs=1e-4)


def test_exclude_and_config(tmp_path):
    labels = shapes_map()
    write_label_folder(tmp_path / "labels", None, {"x.jpg": labels}, class_names=["background", 'a "quoted" <cat>', "dog"])
    report = run_check("label_studio_sdk", CHECK, str(tmp_path / "labels"), str(tmp_path / "out"),
                       str(tmp_path / "masks.npz"), "--image-root-url", "https://example.com/p", "-x", "background")
    assert report["exit_code"] == 0
    (task,) = report["tasks"]
    assert task["errors"] == [] and task["url"] == "https://example.com/p/x.jpg"
    assert task["classes"] == ['a "quoted" <cat>', "dog"]
    config = (tmp_path / "out/label_config.xml").read_text()
    assert 'value="background"' not in config and 'background="#800000"' in config  # classes.json colours


def test_refused_without_the_sdk_or_the_url(folder, monkeypatch):
    tmp_path, _ = folder
    monkeypatch.setitem(sys.modules, "label_studio_sdk", None)  # as if not installed
    result = export(tmp_path, "label-studio", "--image-root-url", "/data/local-files/?d=x")
    assert result.exit_code == 2 and "pip install 'maskclip-cli[label-studio]'" in result.output
    assert not (tmp_path / "out").exists()
    result = export(tmp_path, "label-studio")
    assert result.exit_code == 2 and "--image-root-url" in result.output
    result = export(tmp_path, "label-studio", "--image-root-url", "photos")
    assert result.exit_code == 2 and "must start with" in result.output
    assert not (tmp_path / "out").exists()


def test_brush_results_are_the_sdk_encoding():
    """The writer's RLE is mask2rle's, byte for byte (no hand-made encoder)."""
    brush = pytest.importorskip("label_studio_sdk.converter.brush")
    from maskclip_cli.export.label_studio import brush_results

    labels = random_map(np.random.default_rng(1), 37, 53)
    for result in brush_results(labels, CLASS_NAMES, [0, 2]):
        c = CLASS_NAMES.index(result["value"]["brushlabels"][0])
        assert c in (0, 2)
        assert result["value"]["rle"] == brush.mask2rle(np.where(labels == c, 255, 0).astype(np.uint8))


def test_config_write_error_leaves_no_tasks_json(folder, monkeypatch):
    """Disk full at label_config.xml: tasks.json was already renamed into place, so the stopped export
    looked complete; it is now renamed last, after the config."""
    pytest.importorskip("label_studio_sdk.converter.brush")
    import errno

    from maskclip_cli.export import label_studio

    def full(path, write):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(label_studio, "atomic_write", full)
    tmp_path, _ = folder
    result = export(tmp_path, "label-studio", "--image-root-url", "/data/local-files/?d=x")
    assert result.exit_code == 2 and "No space left on device" in result.output, result.output
    assert not (tmp_path / "out/tasks.json").exists() and not (tmp_path / "out/.tasks.json.part").exists()
