"""Eval time per image of each protocol, ViT-B-16 with random weights, on generated images.

Builds a tiny tree in each benchmark's MMSegmentation layout, runs the real reader + protocol +
evaluation runner, and prints seconds per image (text embeddings are computed before timing;
they are a one-off per class list, so the prompt templates are reduced to one to save time --
per-image cost does not depend on them).

    python benchmarks/eval_speed.py [--images 3] [--size 500x375] [--model ViT-B-16] [--methods]

``--methods`` times each dense-feature method (``--method``) under the sclip protocol on PASCAL
Context instead, each also with PAMR. Wall seconds and CPU milliseconds (all threads) per image.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from maskclip_cli.clip.methods import CLIP_ONLY_METHODS
from maskclip_cli.clip.loading import load_clip
from maskclip_cli.engine.maskclip import MaskCLIP
from maskclip_cli.evaluation.datasets import class_names, get_spec, list_samples
from maskclip_cli.evaluation.evaluate import evaluate_segmenter
from maskclip_cli.evaluation.protocols import (
    eval_config,
    protocol_vocabulary,
    protocol_settings,
)

# (protocol, dataset, method, PAMR)
RUNS = [("paper", "pascal-context", "maskclip", False), ("paper", "coco-stuff", "maskclip", False),
        ("sclip", "pascal-context", "maskclip", False), ("sclip", "coco-stuff", "maskclip", False)]
METHOD_RUNS = [("sclip", "pascal-context", m, pamr) for pamr in (False, True) for m in CLIP_ONLY_METHODS]


def make_tree(dataset: str, root: Path, n: int, size: tuple[int, int]) -> Path:
    """``n`` random images with random labels in the dataset's layout; returns its data root."""
    spec = get_spec(dataset)
    rng = np.random.default_rng(0)
    stems = [f"{i:012d}" for i in range(n)]
    for stem in stems:
        img, ann = root / spec.img_dir / f"{stem}{spec.img_suffix}", root / spec.ann_dir / f"{stem}{spec.seg_suffix}"
        img.parent.mkdir(parents=True, exist_ok=True)
        ann.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(img)
        Image.fromarray(rng.integers(0, len(class_names(spec)), (size[1], size[0]), dtype=np.uint8)).save(ann)
    if spec.split:
        (root / spec.split).parent.mkdir(parents=True, exist_ok=True)
        (root / spec.split).write_text("\n".join(stems) + "\n")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--size", default="500x375", help="WxH of the generated images (PASCAL's typical size)")
    parser.add_argument("--model", default="ViT-B-16")
    parser.add_argument("--methods", action="store_true", help="time each --method (sclip protocol, PASCAL Context), with and without PAMR")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    clip = load_clip(args.model, "none", device="cpu")
    print(f"{args.model} random weights, CPU, {torch.get_num_threads()} threads, {args.images} images of {args.size}")
    with tempfile.TemporaryDirectory() as tmp:
        for protocol, dataset, method, pamr in METHOD_RUNS if args.methods else RUNS:
            root = make_tree(dataset, Path(tmp) / dataset, args.images, size)
            spec, ps = get_spec(dataset), protocol_settings(protocol, dataset)
            config = eval_config(ps, templates="simple", method=method, pamr=pamr)
            segmenter = MaskCLIP(clip, protocol_vocabulary(ps, spec, config), config)
            shape = tuple(segmenter.prepare(Image.new("RGB", size)).shape[1:])
            segmenter.label_image(Image.new("RGB", size))  # warm-up
            cpu = time.process_time()
            result = evaluate_segmenter(segmenter, list_samples(spec, root), class_names(spec), ps.bg_threshold, workers=0)
            cpu_ms = (time.process_time() - cpu) * 1000 / result.images
            window = f"window {ps.window}/{ps.stride}" if ps.window else "whole image"
            print(f"{protocol:6s} {dataset:15s} {method:9s} {'PAMR' if pamr else '    '} input {shape[1]}x{shape[0]:<4d} "
                  f"{window:15s} {result.seconds / result.images:6.2f} s/image  {cpu_ms:8.0f} CPU ms/image")


if __name__ == "__main__":
    main()
