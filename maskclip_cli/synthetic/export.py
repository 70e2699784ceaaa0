"""Writing a split of the synthetic world to disk, so the CLI reads it like a real dataset.

Two layouts:

* ``pascal-context``: MMSegmentation's PASCAL-Context tree (``JPEGImages/*.jpg``,
  ``SegmentationClassContext/*.png``, ``ImageSets/SegmentationContext/<split>.txt``); label 0
  is the background, as in PASCAL-Context.
* ``plain``: ``images/*.png`` and ``labels/*.png`` with the same file stems.

Both also get ``classes.txt`` (the class names, background excluded, in label order 1..K).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from ..core.hooks import SILENT, ProgressHook
from .world import CLASSES, WorldSpec, make_scene

LAYOUTS = ("pascal-context", "plain")


def write_split(root: Path, seed: int, count: int, layout: str = "pascal-context", split: str = "val",
                spec: WorldSpec = WorldSpec(), hook: ProgressHook = SILENT) -> list[str]:
    """Write scenes ``0 .. count-1`` of world ``seed`` under ``root``; return their stems."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")
    if layout == "pascal-context":
        image_dir, label_dir, image_ext = root / "JPEGImages", root / "SegmentationClassContext", ".jpg"
    else:
        image_dir, label_dir, image_ext = root / "images", root / "labels", ".png"
    image_dir.mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)
    stems = []
    hook.start(count, f"writing {split}")
    for index in range(count):
        scene = make_scene(seed, index, spec)
        stem = f"synth_{seed}_{index:06d}"
        scene.image.save(image_dir / f"{stem}{image_ext}", quality=95)
        Image.fromarray(scene.labels).save(label_dir / f"{stem}.png")
        stems.append(stem)
        hook.advance(1)
    hook.finish()
    if layout == "pascal-context":
        sets = root / "ImageSets" / "SegmentationContext"
        sets.mkdir(parents=True, exist_ok=True)
        (sets / f"{split}.txt").write_text("\n".join(stems) + "\n")
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return stems
