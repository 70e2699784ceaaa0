"""The train/validation split shared by the coco, yolo-seg and hf exports: a hash of the seed and the
image's path, so the split is deterministic per image and adding images never moves the others."""

from __future__ import annotations

import hashlib


def in_val_split(source: str, seed: int, val_fraction: float) -> bool:
    digest = hashlib.sha256(f"{seed}:{source}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < val_fraction
