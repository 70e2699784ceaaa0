"""The per-image output schema: one validator for every manifest line (types, ranges, safe paths),
map kinds driving the label folder's paths, bad lines reported and skipped (issues 17 and 22)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from label_folders import CLASS_NAMES, shapes_map, write_label_folder
from PIL import Image

from maskclip_cli.core.errors import MaskCLIPError
from maskclip_cli.core.hooks import ProgressHook
from maskclip_cli.formats.image_entry import CONFIDENCE, LABEL, MAP_KINDS, ImageEntry, InvalidEntry, inside
from maskclip_cli.formats.label_folder import LabelFolder
from maskclip_cli.formats.manifest import ManifestReader

GOOD = {"source": "nested/b.png", "label": "labels/nested/b.png", "confidence": "confidence/nested/b.png",
        "width": 40, "height": 72, "classes_present": ["cat", "dog"], "mean_confidence": 0.7072, "status": "ok",
        "settings": "2cd0d44a23a09a02", "label_bytes": 1474, "confidence_bytes": 3020}


class Recorder(ProgressHook):
    def __init__(self):
        self.warnings = []

    def warn(self, message):
        self.warnings.append(message)


def test_a_0_2_0_line_reads_and_writes_back_unchanged():
    entry = ImageEntry.from_json(GOOD, CLASS_NAMES)
    assert json.dumps(entry.to_json()) == json.dumps(GOOD)  # same keys, same order
    assert entry.stem == "nested/b" and entry.label == GOOD["label"] and entry.confidence == GOOD["confidence"]
    failed = {"source": "x.jpg", "status": "error", "error": "OSError: truncated", "settings": "t"}
    assert json.dumps(ImageEntry.from_json(failed).to_json()) == json.dumps(failed)


def test_a_0_1_0_line_without_sizes_is_valid():
    line = {k: v for k, v in GOOD.items() if not k.endswith("_bytes")}
    assert ImageEntry.from_json(line).sizes == {}


@pytest.mark.parametrize("field, value, reason", [
    ("source", 5, "source must be a non-empty string"),
    ("source", ["a.jpg"], "source must be a non-empty string"),
    ("source", "/etc/passwd", "absolute path"),
    ("source", "../outside.jpg", "climbs out"),
    ("source", "C:\\photos\\a.jpg", "absolute path"),
    ("label", "/tmp/x.png", "absolute path"),
    ("label", "labels/../../x.png", "climbs out"),
    ("label", "confidence/nested/b.png", "not a png file under labels/"),
    ("confidence", "confidence/../../../x.png", "climbs out"),
    ("confidence", "confidence/b.jpg", "under confidence/"),
    ("classes_present", "cat", "list of class names"),
    ("classes_present", [1, 2], "list of class names"),
    ("classes_present", ["cat", "unicorn"], "does not have: unicorn"),
    ("mean_confidence", float("nan"), "in [0, 1]"),
    ("mean_confidence", float("inf"), "in [0, 1]"),
    ("mean_confidence", "0.5", "in [0, 1]"),
    ("mean_confidence", 1.5, "in [0, 1]"),
    ("width", "40", "integer >= 1"),
    ("height", 0, "integer >= 1"),
    ("width", True, "integer >= 1"),
    ("label_bytes", -1, "integer >= 0"),
    ("status", "done", "status must be one of"),
    ("settings", 7, "settings must be a string"),
])
def test_every_field_is_validated(field, value, reason):
    with pytest.raises(InvalidEntry, match=reason.replace("[", r"\[").replace("]", r"\]")):
        ImageEntry.from_json({**GOOD, field: value}, CLASS_NAMES)


def test_classes_present_string_is_not_split_into_characters(tmp_path):
    """Issue 22: a string was turned into a tuple of its characters."""
    write_label_folder(tmp_path, None, {"a.jpg": shapes_map(20, 30)})
    line = json.loads((tmp_path / "manifest.jsonl").read_text())
    (tmp_path / "manifest.jsonl").write_text(json.dumps({**line, "classes_present": "cat"}) + "\n")
    [entry] = list(LabelFolder.open(tmp_path).reader())
    assert not entry.ok and "classes_present must be a list" in entry.error


def test_inside_is_the_one_join_of_untrusted_paths(tmp_path):
    assert inside(tmp_path, "a/b.jpg", "source") == tmp_path / "a/b.jpg"
    for bad in ("/abs.jpg", "a/../../b.jpg", "..", "", "\\\\server\\share\\x.jpg", 3):
        with pytest.raises(InvalidEntry):
            inside(tmp_path, bad, "source")


def test_bad_lines_are_reported_through_the_hook_and_skipped(tmp_path):
    """Issue 22: an invalid line naming its image becomes a failed entry with the reason (it does not
    shadow an earlier valid line); one without a usable source is only reported; nothing crashes."""
    write_label_folder(tmp_path, None, {"a.jpg": shapes_map(20, 30), "b.jpg": shapes_map(20, 30)})
    manifest = tmp_path / "manifest.jsonl"
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join([*lines, '{"source": 5}', "{not json", '{"source": "a.jpg", "status": "ok"}',
                                   json.dumps({**json.loads(lines[0]), "source": "c.jpg", "mean_confidence": "x"})]) + "\n")
    hook = Recorder()
    entries = {e.source: e for e in LabelFolder.open(tmp_path).reader(hook)}
    assert sorted(entries) == ["a.jpg", "b.jpg", "c.jpg"]
    assert entries["a.jpg"].ok and entries["b.jpg"].ok  # the valid line stands
    assert not entries["c.jpg"].ok and "mean_confidence" in entries["c.jpg"].error
    assert len(hook.warnings) == 4 and all("manifest.jsonl line" in w for w in hook.warnings)
    assert any("line 3: source must be a non-empty string" in w for w in hook.warnings)


def test_one_reader_sees_the_main_manifest_and_unmerged_shard_parts(tmp_path):
    """Export, report and overlay read the merged view, as the label job's resume does."""
    write_label_folder(tmp_path, None, {"a.jpg": shapes_map(20, 30), "b.jpg": shapes_map(20, 30)})
    lines = (tmp_path / "manifest.jsonl").read_text().splitlines()
    (tmp_path / "manifest.jsonl").write_text(lines[0] + "\n")
    (tmp_path / "manifest.shard-1-of-2.jsonl").write_text(lines[1] + "\n")
    assert [e.source for e in ManifestReader(tmp_path)] == ["a.jpg", "b.jpg"]


def test_map_kinds_drive_the_label_folder_paths(tmp_path):
    folder = LabelFolder(tmp_path)
    assert [k.name for k in MAP_KINDS] == ["label", "confidence"]
    assert folder.output_dirs()[:2] == [tmp_path / LABEL.folder, tmp_path / CONFIDENCE.folder]
    labels = shapes_map(20, 30)
    conf = np.full(labels.shape, 0.5, np.float32)
    paths, sizes = folder.write_maps("x/y", {"label": labels, "confidence": conf}, 1)
    assert paths == {"label": "labels/x/y.png", "confidence": "confidence/x/y.png"}
    assert sizes == {k: (tmp_path / p).stat().st_size for k, p in paths.items()}
    entry = ImageEntry("x/y.jpg", maps=paths, sizes=sizes, width=30, height=20)
    assert folder.intact(entry)
    maps = folder.read_maps(entry)
    assert np.array_equal(maps["label"], labels) and np.allclose(maps["confidence"], 0.5, atol=1 / 255)
    (tmp_path / paths["confidence"]).write_bytes(b"truncated")
    assert not folder.intact(entry)


def test_label_and_confidence_maps_of_different_sizes_are_one_error(tmp_path):
    """Issue 22: a traceback in coco and report before."""
    folder = LabelFolder(tmp_path)
    paths, _ = folder.write_maps("a", {"label": shapes_map(20, 30), "confidence": np.zeros((21, 30), np.float32)}, 1)
    with pytest.raises(MaskCLIPError, match="maps of different sizes"):
        folder.read_maps(ImageEntry("a.jpg", maps=paths))


def test_decompression_bomb_label_png_is_one_error(tmp_path, monkeypatch):
    """Issue 22: a label PNG over PIL's pixel limit raised DecompressionBombError (a traceback)."""
    folder = LabelFolder(tmp_path)
    paths, _ = folder.write_maps("a", {"label": shapes_map(20, 30), "confidence": np.zeros((20, 30), np.float32)}, 1)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 20 x 30 > 2 x the limit: PIL refuses it
    with pytest.raises(MaskCLIPError, match="Cannot read label map"):
        folder.read_maps(ImageEntry("a.jpg", maps=paths))


def test_a_map_kind_added_later_keeps_older_folders_valid(tmp_path, monkeypatch):
    """Adding a per-image output: one MapKind in the table (``required=False``); entries written
    before it (no key) stay valid and intact, new ones record, write and read it."""
    import maskclip_cli.formats.image_entry as schema
    import maskclip_cli.formats.label_folder as label_folder

    extra = schema.MapKind("margin", "margin", ("png",), CONFIDENCE.write, CONFIDENCE.read, required=False)
    kinds = (*schema.MAP_KINDS, extra)
    monkeypatch.setattr(schema, "MAP_KINDS", kinds)
    monkeypatch.setattr(label_folder, "MAP_KINDS", kinds)
    old = ImageEntry.from_json(GOOD, CLASS_NAMES)
    assert "margin" not in old.maps and json.dumps(old.to_json()) == json.dumps(GOOD)
    folder = LabelFolder(tmp_path)
    labels = shapes_map(20, 30)
    paths, sizes = folder.write_maps("a", {"label": labels, "confidence": np.zeros(labels.shape, np.float32),
                                           "margin": np.full(labels.shape, 0.25, np.float32)}, 1)
    entry = ImageEntry.from_json(ImageEntry("a.jpg", maps=paths, sizes=sizes, width=30, height=20).to_json())
    assert entry.maps["margin"] == "margin/a.png" and entry.to_json()["margin_bytes"] == sizes["margin"]
    assert folder.intact(entry)
    assert np.allclose(folder.read_maps(entry)["margin"], 0.25, atol=1 / 255)
