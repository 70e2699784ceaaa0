"""Exports round-trip: COCO masks decode back to the label maps exactly, YOLO polygons rasterise
back onto shapes of known geometry, CVAT masks map back to the classes; bad input is refused."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from label_folders import CLASS_NAMES, disk, shapes_map, with_npy_confidence, write_label_folder
from PIL import Image
from pycocotools.coco import COCO
from typer.testing import CliRunner

from maskclip_cli.cli import app
from maskclip_cli.export.yolo_seg import component_polygons

runner = CliRunner()


def random_map(rng, h, w):
    """Blocky random classes with some ignore pixels: many components, holes, touching borders."""
    small = rng.integers(0, 3, (h // 8 + 1, w // 8 + 1)).astype(np.uint8)
    labels = np.kron(small, np.ones((8, 8), np.uint8))[:h, :w]
    labels[rng.random((h, w)) < 0.02] = 255
    return labels


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(3)
    maps = {"a.jpg": shapes_map(), "nested/b.png": random_map(rng, 45, 70), "c.jpg": random_map(rng, 64, 33)}
    write_label_folder(tmp_path / "labels", tmp_path / "images", maps, failed={"bad.jpg": "OSError: truncated"})
    return tmp_path, maps


def export(tmp_path, fmt, *extra, out="out"):
    args = ["export", str(tmp_path / "labels"), "--format", fmt, "--out", str(tmp_path / out), "--no-progress", *extra]
    return runner.invoke(app, args)


def conf_of(tmp_path, source):
    stem = source.rsplit(".", 1)[0]
    return np.asarray(Image.open(tmp_path / "labels" / "confidence" / f"{stem}.png"), np.float64) / 255


@pytest.mark.parametrize("instances", [False, True])
def test_coco_masks_decode_to_label_maps(folder, instances):
    tmp_path, maps = folder
    result = export(tmp_path, "coco", "--images", str(tmp_path / "images"), "--val-fraction", "0",
                    *(["--instances"] if instances else []))
    assert result.exit_code == 1, result.output  # bad.jpg is skipped and recorded
    assert json.loads((tmp_path / "out/failed.jsonl").read_text())["source"] == "bad.jpg"
    coco = COCO(str(tmp_path / "out/annotations/instances_train.json"))
    assert [coco.cats[i]["name"] for i in sorted(coco.cats)] == CLASS_NAMES
    assert sorted(coco.cats) == [1, 2, 3]
    assert sorted(img["file_name"] for img in coco.imgs.values()) == sorted(maps)
    for image in coco.imgs.values():
        labels = maps[image["file_name"]]
        assert (tmp_path / "out/images/train" / image["file_name"]).is_file()
        assert (image["height"], image["width"]) == labels.shape
        painted = np.full(labels.shape, 255, np.uint8)
        confidence = conf_of(tmp_path, image["file_name"])
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
        for ann in anns:
            m = coco.annToMask(ann).astype(bool)
            assert not (painted[m] != 255).any()  # annotations never overlap
            painted[m] = ann["category_id"] - 1
            assert ann["area"] == m.sum() and ann["iscrowd"] == 0
            ys, xs = np.nonzero(m)
            assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            assert ann["score"] == pytest.approx(confidence[m].mean(), abs=1e-4)
        assert np.array_equal(painted, labels)
        per_class = {c: sum(a["category_id"] == c + 1 for a in anns) for c in range(3)}
        if instances and image["file_name"] == "a.jpg":
            assert per_class == {0: 2, 1: 1, 2: 2}  # background + its island inside the ring; ring + rectangle
        if not instances:
            assert all(v <= 1 for v in per_class.values())


def rasterise(lines, h, w):
    """Each class's polygons filled back as Ultralytics' polygon2mask does: scaled to pixels,
    truncated to int32, cv2.fillPoly."""
    masks = {}
    for line in lines:
        values = line.split()
        xy = np.asarray(values[1:], float).reshape(-1, 2) * (w, h)
        m = masks.setdefault(int(values[0]), np.zeros((h, w), np.uint8))
        layer = np.zeros((h, w), np.uint8)
        cv2.fillPoly(layer, [xy.astype(np.int32)], 1)
        m |= layer
    return masks


def test_yolo_rectangles_come_back_pixel_exact(tmp_path):
    """On an odd-sized image (k / w is not exact in decimal), truncating rasterisers get every
    rectangle back to the pixel."""
    labels = np.zeros((89, 97), np.uint8)
    labels[7:20, 11:40] = 1
    labels[50:80, 3:90] = 2
    write_label_folder(tmp_path / "labels", tmp_path / "images", {"r.png": labels})
    assert export(tmp_path, "yolo-seg", "--images", str(tmp_path / "images"), "--val-fraction", "0").exit_code == 0
    masks = rasterise((tmp_path / "out/labels/train/r.txt").read_text().splitlines(), 89, 97)
    for c in (1, 2):
        assert np.array_equal(masks[c].astype(bool), labels == c)


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_yolo_polygons_rasterise_back_to_known_shapes(tmp_path):
    labels = shapes_map(240, 320)
    labels[disk(240, 320, 200, 280, 3)] = 1  # a tiny cat component, dropped by --min-area
    write_label_folder(tmp_path / "labels", tmp_path / "images", {"shapes.jpg": labels})
    result = export(tmp_path, "yolo-seg", "--images", str(tmp_path / "images"), "--min-area", "50", "--val-fraction", "0")
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "out/labels/train/shapes.txt").read_text().splitlines()
    assert (tmp_path / "out/images/train/shapes.jpg").is_file()
    counts = {c: sum(line.split()[0] == str(c) for line in lines) for c in range(3)}
    assert counts == {0: 2, 1: 1, 2: 2}  # the tiny disk is gone
    masks = rasterise(lines, 240, 320)
    reference = shapes_map(240, 320)
    for c in range(3):
        assert iou(masks[c].astype(bool), reference == c) >= 0.95, c
    ring_hole = disk(240, 320, 140, 220, 26)  # the ring's hole (radius 30) stays empty of dog
    assert masks[2][ring_hole].mean() < 0.05
    data = (tmp_path / "out/data.yaml").read_text()
    assert "train: images/train" in data and 'nc: 3' in data and '1: "cat"' in data


def test_polygons_of_a_ring_keep_the_hole():
    ring = disk(100, 100, 50, 50, 40) & ~disk(100, 100, 50, 50, 20)
    (polygon,) = component_polygons(ring)
    filled = np.zeros((100, 100), np.uint8)
    cv2.fillPoly(filled, [polygon.astype(np.int32)], 1)
    assert iou(filled.astype(bool), ring) >= 0.97
    assert component_polygons(ring, min_area=10**5) == []


def test_yolo_split_is_seeded_and_deterministic(tmp_path):
    maps = {f"img{i:02d}.jpg": shapes_map(30, 40) for i in range(40)}
    write_label_folder(tmp_path / "labels", tmp_path / "images", maps)

    def split(seed, out):
        assert export(tmp_path, "yolo-seg", "--images", str(tmp_path / "images"), "--val-fraction", "0.25",
                      "--seed", str(seed), out=out).exit_code == 0
        return sorted(p.name for p in (tmp_path / out / "labels/val").iterdir())

    first = split(0, "a")
    assert 3 <= len(first) <= 20
    assert split(0, "b") == first and split(1, "c") != first
    assert "val: images/val" in (tmp_path / "a/data.yaml").read_text()
    assert len(list((tmp_path / "a/images/train").iterdir())) == 40 - len(first)


@pytest.mark.parametrize("fraction, train, val", [("1", "images/val", "images/val"), ("0", "images/train", "images/train")])
def test_yolo_val_fraction_0_and_1(tmp_path, fraction, train, val):
    """`--val-fraction 1` wrote `train: images/train`, a folder that does not exist, so Ultralytics
    refused the dataset; an empty split now points at the other one (as val did for 0)."""
    write_label_folder(tmp_path / "labels", tmp_path / "images", {f"img{i}.jpg": shapes_map(30, 40) for i in range(3)})
    assert export(tmp_path, "yolo-seg", "--images", str(tmp_path / "images"), "--val-fraction", fraction).exit_code == 0
    text = (tmp_path / "out/data.yaml").read_text()
    assert f"train: {train}\nval: {val}\n" in text
    assert len(list((tmp_path / "out" / train).iterdir())) == 3


def test_yolo_needs_images(folder):
    tmp_path, _ = folder
    result = export(tmp_path, "yolo-seg")
    assert result.exit_code == 2 and "--images" in result.output


def test_cvat_mask_layout(folder):
    tmp_path, maps = folder
    assert export(tmp_path, "cvat-mask").exit_code == 1
    out = tmp_path / "out"
    labelmap = (out / "labelmap.txt").read_text().splitlines()
    assert labelmap[0].startswith("# label:color_rgb")
    colours = {}
    for line in labelmap[1:]:
        name, rgb, parts, actions = line.split(":")
        colours[tuple(int(v) for v in rgb.split(","))] = name
    assert colours[(0, 0, 0)] == "background" and sorted(colours.values()) == sorted(CLASS_NAMES)
    ids = (out / "ImageSets/Segmentation/default.txt").read_text().split()
    assert sorted(ids) == ["a", "c", "nested/b"]
    for source, labels in maps.items():
        rgb = np.asarray(Image.open(out / "SegmentationClass" / f"{source.rsplit('.', 1)[0]}.png").convert("RGB"))
        names = np.array([[colours[tuple(p)] for p in row] for row in rgb])
        expected = np.array(CLASS_NAMES + [""] * 253)[labels]
        expected[labels == 255] = "background"
        assert (names == expected).all()


def test_cvat_adds_background_when_class_zero_is_an_object(tmp_path):
    labels = shapes_map(30, 40)
    write_label_folder(tmp_path / "labels", None, {"x.jpg": labels}, class_names=["cat", "dog", "tree"])
    assert export(tmp_path, "cvat-mask").exit_code == 0
    lines = (tmp_path / "out/labelmap.txt").read_text().splitlines()[1:]
    assert [ln.split(":")[0] for ln in lines] == ["background", "cat", "dog", "tree"]
    assert lines[0].split(":")[1] == "0,0,0"
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out/SegmentationClass/x.png")), labels + 1)


def test_refuses_non_empty_out_unless_overwrite(folder):
    tmp_path, _ = folder
    (tmp_path / "out").mkdir()
    (tmp_path / "out/keep.txt").write_text("mine")
    result = export(tmp_path, "cvat-mask")
    assert result.exit_code == 2 and "not empty" in result.output
    # --overwrite replaces only an earlier maskclip export (its marker): the user's own folder stays as it is
    result = export(tmp_path, "cvat-mask", "--overwrite")
    assert result.exit_code == 2 and "holds no maskclip export" in result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["keep.txt"]
    (tmp_path / "out/keep.txt").unlink()
    assert export(tmp_path, "cvat-mask").exit_code == 1  # one image fails in this fixture
    (tmp_path / "out/keep.txt").write_text("mine")
    assert export(tmp_path, "cvat-mask", "--overwrite").exit_code == 1
    assert (tmp_path / "out/keep.txt").read_text() == "mine" and (tmp_path / "out/labelmap.txt").is_file()
    assert export(tmp_path, "nope").exit_code == 2
    assert runner.invoke(app, ["export", str(tmp_path / "images"), "-f", "coco", "-o", str(tmp_path / "o2")]).exit_code == 2


def test_yolo_polygons_with_many_pinholes():
    """Scattered ignore pixels (as --min-confidence leaves them) make hundreds of one-pixel holes;
    the polygons still rasterise back to the class's pixels."""
    rng = np.random.default_rng(0)
    mask = disk(200, 300, 100, 150, 90)
    mask[rng.random(mask.shape) < 0.01] = False
    polygons = component_polygons(mask)
    filled = np.zeros(mask.shape, np.uint8)
    cv2.fillPoly(filled, [p.astype(np.int32) for p in polygons], 1)
    assert iou(filled.astype(bool), mask) >= 0.95


def test_coco_scores_from_npy_confidence(tmp_path):
    """Folders labelled with --confidence-format npy give the same scores (float16 maps)."""
    labels = shapes_map(40, 50)
    conf = np.random.default_rng(0).uniform(0, 1, labels.shape).astype(np.float32)
    write_label_folder(tmp_path / "labels", None, {"x.jpg": labels})
    with_npy_confidence(tmp_path / "labels", "x", conf)
    assert export(tmp_path, "coco", "--val-fraction", "0").exit_code == 0
    coco = COCO(str(tmp_path / "out/annotations/instances_train.json"))
    for ann in coco.loadAnns(coco.getAnnIds()):
        m = coco.annToMask(ann).astype(bool)
        assert ann["score"] == pytest.approx(conf.astype(np.float16)[m].astype(np.float64).mean(), abs=1e-4)


def test_interrupted_export_leaves_no_temporary_files(folder, monkeypatch):
    """Ctrl-C in the middle: COCO's part files are removed and no annotations/ appears."""
    from maskclip_cli.export.run import export_folder
    from maskclip_cli.export.writer import ExportOptions
    from maskclip_cli.export.coco import CocoWriter

    tmp_path, _ = folder
    calls = []

    def interrupt(self, *args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(CocoWriter, "add", interrupt)
    with pytest.raises(KeyboardInterrupt):
        export_folder(tmp_path / "labels", tmp_path / "out", ExportOptions(format="coco"))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".maskclip-export", "failed.jsonl"]  # bad.jpg came before


def test_exclude_leaves_classes_out(folder):
    """--exclude background: COCO keeps the other ids, YOLO renumbers them without gaps, CVAT
    makes the class unlabelled; an unknown name is refused before anything is written."""
    tmp_path, maps = folder
    images = ["--images", str(tmp_path / "images")]
    assert export(tmp_path, "coco", "--exclude", "background", "--val-fraction", "0", out="c").exit_code == 1
    coco = COCO(str(tmp_path / "c/annotations/instances_train.json"))
    assert {c["id"]: c["name"] for c in coco.cats.values()} == {2: "cat", 3: "dog"}
    assert {a["category_id"] for a in coco.anns.values()} == {2, 3}
    assert export(tmp_path, "yolo-seg", "-x", "background", *images, "--val-fraction", "0", out="y").exit_code == 1
    data = (tmp_path / "y/data.yaml").read_text()
    assert 'nc: 2' in data and '0: "cat"' in data and '1: "dog"' in data
    lines = (tmp_path / "y/labels/train/a.txt").read_text().splitlines()
    masks = rasterise(lines, *maps["a.jpg"].shape)
    for c in (1, 2):
        assert iou(masks[c - 1].astype(bool), maps["a.jpg"] == c) >= 0.95
    assert export(tmp_path, "cvat-mask", "--exclude", "cat", out="v").exit_code == 1
    mask = np.asarray(Image.open(tmp_path / "v/SegmentationClass/a.png"))
    assert set(np.unique(mask[maps["a.jpg"] == 1])) == {0}
    result = export(tmp_path, "coco", "--exclude", "unicorn", out="u")
    assert result.exit_code == 2 and "unicorn" in result.output and not (tmp_path / "u").exists()


def test_overwrite_never_clears_a_folder_that_is_not_a_maskclip_export(folder):
    """Hostile pass: `export -f coco --out proj --overwrite` deleted the user's own proj/images/ (the
    format's names) although proj held no export of ours. Now only a folder carrying the export marker
    (written first by every export, so a killed one is replaceable too) is cleared, and only the format's names."""
    tmp_path, _ = folder
    proj = tmp_path / "proj"
    (proj / "images").mkdir(parents=True)
    (proj / "images/holiday.jpg").write_bytes(b"photo")
    result = export(tmp_path, "coco", "--overwrite", out="proj")
    assert result.exit_code == 2 and "holds no maskclip export" in result.output
    assert (proj / "images/holiday.jpg").read_bytes() == b"photo" and sorted(p.name for p in proj.iterdir()) == ["images"]
