"""Label pipeline throughput against the bare model forward on the same images.

    python benchmarks/label_throughput.py [--images 16] [--model ViT-B-16] [--short-side 512]

"bare" = MaskCLIP's scores for inputs already decoded, resized and stacked in memory (the compute
the pipeline cannot avoid). "pipeline" = `label_folder` on JPEG files: decode + resize in DataLoader
workers, compute, upsample to full size, PNG writing in threads. Goal: pipeline >= 0.9x bare.
Random weights (--pretrained none): speed only.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from maskclip_cli import MaskCLIP, MaskCLIPConfig, load_clip
from maskclip_cli.labelling.label_job import LabelOptions, label_folder


def make_images(root: Path, n: int, size: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        # smooth random colour fields compress like photos rather than like noise
        small = rng.integers(0, 255, (size[1] // 32, size[0] // 32, 3), dtype=np.uint8)
        Image.fromarray(small).resize(size, Image.BICUBIC).save(root / f"{i:04d}.jpg", quality=90)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--model", default="ViT-B-16")
    ap.add_argument("--short-side", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()

    torch.manual_seed(0)
    clip = load_clip(args.model, "none", device=args.device)
    classes = ["cat", "dog", "car", "person", "tree", "sky", "road", "building"]
    seg = MaskCLIP(clip, classes, MaskCLIPConfig(templates="simple", short_side=args.short_side))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        root.mkdir()
        make_images(root, args.images, (640, 480))
        inputs = [seg.prepare(Image.open(p).convert("RGB")) for p in sorted(root.iterdir())]
        seg.scores(inputs[0][None].to(seg.device))  # warm-up
        start = time.perf_counter()
        for i in range(0, len(inputs), args.batch_size):
            seg.scores(torch.stack(inputs[i : i + args.batch_size]).to(seg.device))
        if seg.device.type == "cuda":
            torch.cuda.synchronize()
        bare = len(inputs) / (time.perf_counter() - start)

        options = LabelOptions(batch_size=args.batch_size, workers=args.workers)
        summary = label_folder(seg, root, Path(tmp) / "out", options)
        assert summary.labelled == args.images
        pipeline = summary.images_per_second
    print(f"model={args.model} device={args.device} images={args.images} 640x480 -> short side {args.short_side} "
          f"batch={args.batch_size} workers={args.workers} threads={torch.get_num_threads()}")
    print(f"bare forward : {bare:.3f} img/s")
    print(f"label pipeline: {pipeline:.3f} img/s")
    print(f"ratio         : {pipeline / bare:.3f}x (goal >= 0.9x)")


if __name__ == "__main__":
    main()
