"""Label folders written directly (no model): known label maps, confidences and photos, for the
tests of overlays, exports and the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from maskclip_cli.formats.label_files import palette, write_confidence, write_label_png
from maskclip_cli.formats.label_folder import LabelFolder
from maskclip_cli.core.record import ClipSource, LabelRecord, TrainedNetwork, WeightsSource

CLASS_NAMES = ["background", "cat", "dog"]


def write_label_folder(
    root: Path, images: Path | None, maps: dict[str, np.ndarray], confidences: dict[str, np.ndarray] | None = None,
    failed: dict[str, str] | None = None, class_names: list[str] = CLASS_NAMES, seed: int = 0,
) -> None:
    """``maps``: image path (relative, with extension) -> (H, W) uint8 label map. Photos are random
    noise of the same size, written under ``images`` when given."""
    rng = np.random.default_rng(seed)
    colours = palette(len(class_names))
    (root / "classes.json").parent.mkdir(parents=True, exist_ok=True)
    LabelFolder(root).write_classes(LabelRecord(list(class_names), ClipSource("test", WeightsSource("random")),
                                                inference={"templates": "simple"}))
    lines = []
    for source, labels in maps.items():
        stem = str(Path(source).with_suffix(""))
        conf = (confidences or {}).get(source)
        if conf is None:
            conf = rng.uniform(0.2, 1.0, labels.shape).astype(np.float32)
        write_label_png(root / "labels" / f"{stem}.png", labels, colours)
        write_confidence(root / "confidence" / f"{stem}.png", conf)
        if images is not None:
            (images / source).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (*labels.shape, 3), dtype=np.uint8)).save(images / source)
        present = [class_names[i] for i in np.unique(labels) if i != 255]
        lines.append({"source": source, "label": f"labels/{stem}.png", "confidence": f"confidence/{stem}.png",
                      "width": labels.shape[1], "height": labels.shape[0], "classes_present": present,
                      "mean_confidence": round(float(conf.mean()), 4), "status": "ok", "settings": "x"})
    for source, error in (failed or {}).items():
        lines.append({"source": source, "status": "error", "error": error, "settings": "x"})
    (root / "manifest.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))


def with_npy_confidence(root: Path, stem: str, conf: np.ndarray) -> None:
    """Replace an image's PNG confidence by a float .npy map (as ``--confidence-format npy`` writes)."""
    (root / "confidence" / f"{stem}.png").unlink()
    write_confidence(root / "confidence" / f"{stem}.npy", conf)


def record_with_machine_paths(class_names: list[str]) -> LabelRecord:
    """A record naming its model folder, weights and network by absolute paths of the machine that
    labelled (``/home/someone/...``): what a shared file must not show."""
    return LabelRecord(list(class_names),
                       ClipSource("local-dir:/home/someone/models/clip", WeightsSource("checkpoint", path="/home/someone/w.pt", sha256="ab" * 8)),
                       segmenter="maskclip+", network=TrainedNetwork("/home/someone/run/ckpt.pt", "cd" * 8, "deeplabv2", 100, 512))


def disk(h: int, w: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def shapes_map(h: int = 120, w: int = 160) -> np.ndarray:
    """Background with a cat disk, a dog ring (a hole showing background) and a dog rectangle."""
    labels = np.zeros((h, w), np.uint8)
    labels[disk(h, w, 40, 40, 25)] = 1
    labels[disk(h, w, 70, 110, 35) & ~disk(h, w, 70, 110, 15)] = 2
    labels[95:115, 10:60] = 2
    return labels
