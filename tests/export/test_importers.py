"""COCO, CVAT masks and YOLO-seg exports loaded by the tools users load them with: Datumaro detects
and imports COCO (coco_instances: masks = the label maps, per split) and the CVAT mask export
(voc_segmentation: masks = the label maps); Ultralytics' dataset checker and YOLODataset read the
YOLO-seg export and its own polygon2mask draws the label maps back."""

from __future__ import annotations

import numpy as np
from importers import run_check
from label_folders import CLASS_NAMES, shapes_map, write_label_folder
from test_export import export, folder, iou  # noqa: F401 (fixture)

from maskclip_cli.export.split import in_val_split

# Datumaro: what it detects, then every item's masks painted by class name into one map (255 = none)
DATUMARO = r"""
import json, sys
import numpy as np
import datumaro as dm

path, fmt, npz = sys.argv[1:]
detected = dm.Environment().detect_dataset(path)
ds = dm.Dataset.import_from(path, fmt)
names = [c.name for c in ds.categories()[dm.AnnotationType.label]]
maps, items = {}, []
for item in ds:
    masks = [a for a in item.annotations if a.type == dm.AnnotationType.mask]
    painted = None
    for a in masks:
        m = a.image.astype(bool)
        painted = np.full(m.shape, 255, np.uint8) if painted is None else painted
        assert not (painted[m] != 255).any(), "masks overlap"
        painted[m] = a.label
    maps[f"{item.subset}/{item.id}"] = painted
    items.append({"id": item.id, "subset": item.subset, "photo": bool(item.media and item.media.has_data)})
np.savez(npz, **maps)
print(json.dumps({"detected": detected, "names": names, "items": items}))
"""


def datumaro_maps(path, fmt, npz):
    report = run_check("datumaro", DATUMARO, str(path), fmt, str(npz))
    return report, np.load(npz)


def test_coco_detected_and_loaded_by_datumaro(folder):
    tmp_path, maps = folder
    result = export(tmp_path, "coco", "--images", str(tmp_path / "images"), "--val-fraction", "0.5", "--seed", "3")
    assert result.exit_code == 1, result.output
    val = {s for s in maps if in_val_split(s, 3, 0.5)}
    assert val and len(val) < len(maps)  # both splits in use with this seed
    report, masks = datumaro_maps(tmp_path / "out", "coco_instances", tmp_path / "m.npz")
    assert "coco_instances" in report["detected"]
    assert report["names"] == CLASS_NAMES
    assert sorted((i["subset"], i["id"]) for i in report["items"]) == sorted(
        ("val" if s in val else "train", s.rsplit(".", 1)[0]) for s in maps)
    assert all(i["photo"] for i in report["items"])  # found under images/<split>/
    for source, labels in maps.items():
        painted = masks[f"{'val' if source in val else 'train'}/{source.rsplit('.', 1)[0]}"]
        assert np.array_equal(painted, labels), source


def test_cvat_mask_loaded_by_datumaro(folder):
    tmp_path, maps = folder
    assert export(tmp_path, "cvat-mask", "--images", str(tmp_path / "images")).exit_code == 1
    report, masks = datumaro_maps(tmp_path / "out", "voc_segmentation", tmp_path / "m.npz")
    assert "voc_segmentation" in report["detected"]
    assert report["names"] == CLASS_NAMES  # class 0 is "background": no extra entry
    assert all(i["photo"] for i in report["items"])
    for source, labels in maps.items():
        expected = labels.copy()
        expected[labels == 255] = 0  # CVAT has no ignore: unlabelled is background
        assert np.array_equal(masks[f"default/{source.rsplit('.', 1)[0]}"], expected), source


# Ultralytics: its dataset checker, its YOLODataset's labels, and its own polygon2mask per class
ULTRALYTICS = r"""
import json, sys
import numpy as np
from ultralytics.data.dataset import YOLODataset
from ultralytics.data.utils import check_det_dataset, polygon2mask

yaml, npz = sys.argv[1:]
data = check_det_dataset(yaml)
out, counts = {}, {}
for split in ("train", "val"):
    ds = YOLODataset(img_path=data[split], data=data, task="segment", imgsz=64, augment=False, cache=False)
    counts[split] = len(ds.labels)
    for label in ds.labels:
        h, w = label["shape"]
        stem = label["im_file"].rsplit("/", 1)[-1].rsplit(".", 1)[0]
        for c in range(data["nc"]):
            polygons = [s * (w, h) for s, k in zip(label["segments"], label["cls"].ravel()) if k == c]
            mask = np.zeros((h, w), np.uint8)
            for p in polygons:
                mask |= polygon2mask((h, w), [p], color=1, downsample_ratio=1)
            out[f"{split}/{stem}/{c}"] = mask
np.savez(npz, **out)
print(json.dumps({"names": data["names"], "nc": data["nc"], "counts": counts}))
"""


def test_yolo_seg_loaded_by_ultralytics(tmp_path):
    rects = np.zeros((89, 97), np.uint8)
    rects[7:20, 11:40] = 1
    rects[50:80, 3:90] = 2
    maps = {"rects.png": rects, "shapes.jpg": shapes_map(240, 320)}
    write_label_folder(tmp_path / "labels", tmp_path / "images", maps)
    result = export(tmp_path, "yolo-seg", "--images", str(tmp_path / "images"), "--val-fraction", "0.5", "--seed", "0")
    assert result.exit_code == 0, result.output
    split = {s: "val" if in_val_split(s, 0, 0.5) else "train" for s in maps}
    assert sorted(split.values()) == ["train", "val"]
    report = run_check("ultralytics", ULTRALYTICS, str(tmp_path / "out/data.yaml"), str(tmp_path / "m.npz"))
    assert report["nc"] == 3 and list(report["names"].values()) == CLASS_NAMES
    assert report["counts"] == {"train": 1, "val": 1}
    masks = np.load(tmp_path / "m.npz")
    for c in (1, 2):  # rectangles come back pixel-exact through Ultralytics' own rasteriser
        assert np.array_equal(masks[f"{split['rects.png']}/rects/{c}"].astype(bool), rects == c)
    for c in range(3):
        assert iou(masks[f"{split['shapes.jpg']}/shapes/{c}"].astype(bool), maps["shapes.jpg"] == c) >= 0.95
