"""Each benchmark reader on a tiny tree in that dataset's MMSegmentation layout, remapping included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskclip_cli.core.errors import MaskCLIPError
from maskclip_cli.evaluation.datasets import (
    COCO_UNUSED_IDS,
    DATASETS,
    class_names,
    get_spec,
    list_samples,
)


def write_image(path: Path, size: tuple[int, int] = (6, 4)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (120, 30, 200)).save(path)


def write_label(path: Path, values: np.ndarray, palette: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(values.astype(np.uint8), mode="P" if palette else "L")
    if palette:
        img.putpalette([i % 256 for i in range(768)])
    img.save(path)


def labels(*values: int) -> np.ndarray:
    """A 4x6 map holding ``values`` in its first pixels, the rest the first value."""
    out = np.full(24, values[0], dtype=np.uint8)
    out[: len(values)] = values
    return out.reshape(4, 6)


def voc_like_tree(root: Path, ann_dir: str, split: str, maps: dict[str, np.ndarray], palette: bool) -> None:
    for stem, values in maps.items():
        write_image(root / "JPEGImages" / f"{stem}.jpg")
        write_label(root / ann_dir / f"{stem}.png", values, palette)
    write_image(root / "JPEGImages" / "not_in_split.jpg")
    (root / split).parent.mkdir(parents=True, exist_ok=True)
    (root / split).write_text("\n".join(maps) + "\n")


def test_class_lists_have_the_benchmark_sizes():
    sizes = {n: len(class_names(s)) for n, s in DATASETS.items()}
    assert sizes == {"pascal-context": 59, "pascal-context-60": 60, "voc": 20, "voc-bg": 21,
                     "coco-stuff": 171, "ade20k": 150, "cityscapes": 19}
    assert class_names(get_spec("pascal-context-60"))[1:] == class_names(get_spec("pascal-context"))
    assert class_names(get_spec("voc-bg"))[0] == "background"
    for spec in DATASETS.values():
        names = class_names(spec)
        assert len(set(names)) == len(names)


@pytest.mark.parametrize("name", ["pascal-context", "pascal-context-60"])
def test_pascal_context(tmp_path, name):
    voc_like_tree(tmp_path, "SegmentationClassContext", "ImageSets/SegmentationContext/val.txt",
                  {"2008_000002": labels(0, 1, 59, 30), "2008_000003": labels(5)}, palette=False)
    samples = list_samples(get_spec(name), tmp_path)
    assert [s.key for s in samples] == ["2008_000002", "2008_000003"]  # split order, not folder contents
    first = samples[0].load_label().ravel()[:4].tolist()
    assert first == ([255, 0, 58, 29] if name == "pascal-context" else [0, 1, 59, 30])


@pytest.mark.parametrize("name", ["voc", "voc-bg"])
def test_voc_palette_labels(tmp_path, name):
    voc_like_tree(tmp_path, "SegmentationClass", "ImageSets/Segmentation/val.txt",
                  {"2007_000033": labels(0, 1, 20, 255)}, palette=True)
    (sample,) = list_samples(get_spec(name), tmp_path)
    got = sample.load_label().ravel()[:4].tolist()
    assert got == ([255, 0, 19, 255] if name == "voc" else [0, 1, 20, 255])


def test_coco_stuff_train_ids_and_raw_ids(tmp_path):
    img_dir, ann_dir = tmp_path / "images/val2017", tmp_path / "annotations/val2017"
    write_image(img_dir / "000000000139.jpg")
    write_label(ann_dir / "000000000139_labelTrainIds.png", labels(0, 170, 255))
    write_label(ann_dir / "000000000139.png", labels(181))  # raw map beside it: not used
    write_image(img_dir / "000000000285.jpg")
    write_label(ann_dir / "000000000285.png", labels(0, 10, 11, 12, 90, 91, 181, 255))
    samples = list_samples(get_spec("coco-stuff"), tmp_path)
    assert [s.label.name for s in samples] == ["000000000139_labelTrainIds.png", "000000000285.png"]
    assert samples[0].load_label().ravel()[:3].tolist() == [0, 170, 255]
    # raw ids: 11 and 90 are unused COCO ids -> ignore; 12 -> 11; 91 (first stuff) -> 80; 181 -> 170
    assert samples[1].load_label().ravel()[:8].tolist() == [0, 10, 255, 11, 255, 80, 170, 255]
    assert len(COCO_UNUSED_IDS) == 182 - 171


def test_ade20k_reduce_zero_label(tmp_path):
    write_image(tmp_path / "images/validation/ADE_val_00000001.jpg")
    write_label(tmp_path / "annotations/validation/ADE_val_00000001.png", labels(0, 1, 150))
    (sample,) = list_samples(get_spec("ade20k"), tmp_path)
    assert sample.key == "ADE_val_00000001"
    assert sample.load_label().ravel()[:3].tolist() == [255, 0, 149]


def test_cityscapes_nested_cities(tmp_path):
    for city, stem in [("munster", "munster_000000_000019"), ("frankfurt", "frankfurt_000000_000294")]:
        write_image(tmp_path / f"leftImg8bit/val/{city}/{stem}_leftImg8bit.png")
        write_label(tmp_path / f"gtFine/val/{city}/{stem}_gtFine_labelTrainIds.png", labels(0, 18, 255))
    samples = list_samples(get_spec("cityscapes"), tmp_path)
    assert [s.key for s in samples] == ["frankfurt/frankfurt_000000_000294", "munster/munster_000000_000019"]
    assert samples[0].load_label().ravel()[:3].tolist() == [0, 18, 255]


def test_missing_or_malformed_dataset_names_the_expected_file(tmp_path):
    with pytest.raises(MaskCLIPError, match=r"image folder .*JPEGImages"):
        list_samples(get_spec("pascal-context"), tmp_path)
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "SegmentationClassContext").mkdir()
    with pytest.raises(MaskCLIPError, match=r"split file .*ImageSets/SegmentationContext/val.txt"):
        list_samples(get_spec("pascal-context"), tmp_path)
    voc_like_tree(tmp_path, "SegmentationClassContext", "ImageSets/SegmentationContext/val.txt", {"a": labels(1)}, False)
    (tmp_path / "SegmentationClassContext/a.png").unlink()
    with pytest.raises(MaskCLIPError, match=r"label map .*SegmentationClassContext/a.png"):
        list_samples(get_spec("pascal-context"), tmp_path)
    Image.new("RGB", (6, 4)).save(tmp_path / "SegmentationClassContext/a.png")
    (sample,) = list_samples(get_spec("pascal-context"), tmp_path)
    with pytest.raises(MaskCLIPError, match=r"a.png is a RGB image"):
        sample.load_label()
    (tmp_path / "SegmentationClassContext/a.png").write_bytes(b"not a png")
    with pytest.raises(MaskCLIPError, match=r"Cannot read label map .*a.png"):
        sample.load_label()
    with pytest.raises(MaskCLIPError, match="Unknown dataset"):
        get_spec("imagenet")


def test_shipped_synonym_lists_parse_to_the_class_count():
    """SCLIP's class files, one line per class in label-id order; most first words are our names."""
    from maskclip_cli.evaluation.datasets import synonym_classes
    from maskclip_cli.evaluation.protocols import BACKGROUND_WORDS

    for name, spec in DATASETS.items():
        lines = synonym_classes(spec)
        names = class_names(spec)
        assert len(lines) == len(names), name
        first = [w if isinstance(w, str) else w[0] for w in lines]
        assert sum(a == b for a, b in zip(first, names)) >= 0.6 * len(names), name
    voc = synonym_classes(get_spec("voc-bg"))
    assert tuple(voc[0]) == BACKGROUND_WORDS["voc-bg"] and voc[15][:2] == ["person", "person in shirt"]
    assert synonym_classes(get_spec("pascal-context-60"))[0] == "background"
