"""A small folder of images and a tiny MaskCLIP shared by the labelling tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import make_tiny_clip
from PIL import Image

from maskclip_cli.engine.maskclip import MaskCLIP, MaskCLIPConfig

SIZES = {"a.jpg": (64, 48), "nested/deeper/b.PNG": (40, 72), "nested/c.JPEG": (50, 50), "d.webp": (33, 65),
         "e.png": (48, 64), "f.jpg": (80, 40), "g.png": (30, 30)}


def make_images(root: Path, sizes: dict[str, tuple[int, int]] = SIZES, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for rel, (w, h) in sizes.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return root


def tiny_segmenter() -> MaskCLIP:
    return MaskCLIP(make_tiny_clip("vit"), ["cat", "dog", "tree"], MaskCLIPConfig(templates="simple", short_side=32))


def manifest_lines(out: Path, name: str = "manifest.jsonl") -> list[dict]:
    return [json.loads(line) for line in (out / name).read_text().splitlines()]


_HOLD_LOCK = """
import sys, time
from pathlib import Path
from maskclip_cli.labelling.folder_lock import FolderLock
shard = tuple(int(v) for v in sys.argv[2].split("/")) if len(sys.argv) > 2 else None
lock = FolderLock(Path(sys.argv[1]), shard)
print("locked", flush=True)
time.sleep(300)
"""


def hold_lock(out: Path, *shard: str) -> subprocess.Popen:
    """Another process holding the label lock of ``out`` (for shard "K/N" if given) until killed."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(out), *shard], stdout=subprocess.PIPE, env=env, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc
