"""Label pipeline throughput: the CPU-side ceiling, and the pipeline against the bare model forward.

    python benchmarks/label_throughput.py cpu [--images 48] [--workers 1] [--sizes 640x480,1920x1080]
    python benchmarks/label_throughput.py gpu [--images 256] [--model ViT-B-16] [--short-side 512] [--batch-size 32] [--max-batch]
                                              [--method proxyclip|trident|...]

``cpu`` (the ceiling): the real ``label_folder`` (JPEG decode and resize in DataLoader workers,
upsampling, arg-max, PNG writing) driving a near-free segmenter whose scores are shaped like
ViT-B/16's (9 classes on a 1/16 grid of a 512-px short side). It reports the CPU time of every
process of the run (main + workers + writer threads) per image and images/s per core: the most a
GPU can be fed per CPU core. Here the "device" is the CPU, so the work a GPU would do
(normalisation, upsampling, arg-max, quantisation, statistics) is timed apart and reported both
included ("all") and excluded ("host side", what remains for the CPU when a GPU labels).
Goal: host side <= 10 ms per 640x480 image (>= 100 images/s per core).

``gpu``: "bare" = MaskCLIP's fp16 scores for inputs already decoded, resized and stacked in GPU
memory (the compute the pipeline cannot avoid); "pipeline" = ``label_folder`` on JPEG files.
Reports images/s, the ratio (goal >= 0.9x at 512 px on one H100 with 16 cores) and the peak GPU
memory; ``--max-batch`` also finds the largest batch of 640x480 inputs whose forward fits in GPU
memory (doubling until out of memory). Random weights (``--pretrained none``): speed only.
``--method proxyclip`` / ``trident`` add their second backbone (DINO ViT-B/8 or B/16, and SAM
ViT-B; random weights), run in fp16 under the same autocast as CLIP, with the same batches.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import maskclip_cli.labelling.label_job as label_job
from maskclip_cli.clip.preprocess import resize_uint8
from maskclip_cli.engine.segmenter import Segmenter
from maskclip_cli.labelling.label_job import LabelOptions, label_folder
from maskclip_cli.core.record import LabelRecord

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def make_images(root: Path, n: int, size: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        # smooth random colour fields compress like photos rather than like noise
        small = rng.integers(0, 255, (size[1] // 32, size[0] // 32, 3), dtype=np.uint8)
        Image.fromarray(small).resize(size, Image.BICUBIC).save(root / f"{i:04d}.jpg", quality=90)


class NearFreeSegmenter(Segmenter):
    """Real preprocessing, near-free scores shaped like ViT-B/16's: smooth probabilities over
    ``classes`` on the 1/16 grid (smooth, so label maps compress like real ones)."""

    def __init__(self, n_classes: int = 9, short_side: int = 512, device: str = "cpu"):
        self.class_names = [f"class{i}" for i in range(n_classes)]
        self.device = torch.device(device)
        self.short_side, self.stride, self.mean, self.std = short_side, 16, CLIP_MEAN, CLIP_STD

    def resize(self, image: Image.Image) -> torch.Tensor:
        return resize_uint8(image, self.short_side, self.stride)

    def scores(self, images: torch.Tensor) -> torch.Tensor:
        b, _, h, w = images.shape
        g = torch.Generator().manual_seed(h * 10007 + w)
        coarse = torch.randn(b, len(self.class_names), 4, 4, generator=g)
        grid = torch.nn.functional.interpolate(coarse, size=(h // 16, w // 16), mode="bilinear", align_corners=False)
        return (3 * grid).softmax(dim=1).to(images.device)

    def record(self) -> LabelRecord:
        return LabelRecord(self.class_names, None, segmenter="near-free", inference={"short_side": self.short_side})


def _cpu_seconds() -> float:
    t = os.times()  # this process (all threads) + its finished children (the DataLoader workers)
    return t.user + t.system + t.children_user + t.children_system


class _DeviceTimer:
    """CPU time of the device-side steps (on a CPU "device", one torch thread: the calling thread)."""

    def __init__(self, seg: Segmenter):
        self.seconds = 0.0
        label_job.device_maps = self._timed(label_job.device_maps)
        seg.normalise = self._timed(seg.normalise)
        seg.full_size = self._timed(seg.full_size)  # the model (near-free here), upsampling, arg-max

    def _timed(self, fn):
        def run(*a, **k):
            t = time.thread_time()
            try:
                return fn(*a, **k)
            finally:
                self.seconds += time.thread_time() - t
        return run


def cpu_ceiling(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    seg = NearFreeSegmenter()
    timer = _DeviceTimer(seg)
    print(f"CPU-side ceiling: near-free segmenter (9 classes, 1/16 grid), short side 512, batch {args.batch_size}, "
          f"workers {args.workers}, writers {args.writers}, {os.cpu_count()} cores visible")
    for spec in args.sizes.split(","):
        size = tuple(int(v) for v in spec.split("x"))
        n = args.images if size[0] * size[1] <= 640 * 480 else max(4, args.images // 4)
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "images"
            root.mkdir()
            make_images(root, n, size)
            options = LabelOptions(batch_size=args.batch_size, workers=args.workers, writers=args.writers,
                                   png_compression=args.png_compression)
            timer.seconds = 0.0
            cpu0, wall0 = _cpu_seconds(), time.perf_counter()
            summary = label_folder(seg, root, Path(tmp) / "out", options)
            cpu, wall = _cpu_seconds() - cpu0, time.perf_counter() - wall0
            assert summary.labelled == n, summary
            out_bytes = sum(p.stat().st_size for p in (Path(tmp) / "out").rglob("*.png"))
        ms, device_ms = 1000 * cpu / n, 1000 * timer.seconds / n
        host = ms - device_ms
        print(f"{spec:>10}: {n:4d} images  CPU all {ms:6.1f} ms/image, device steps {device_ms:6.1f}, "
              f"host side {host:6.1f} ms/image -> {1000 / host:6.1f} images/s per core  "
              f"(wall {1000 * wall / n:6.1f} ms/image; PNGs {out_bytes / n / 1024:.0f} KiB/image)")


def gpu_pipeline(args: argparse.Namespace) -> None:
    from maskclip_cli import MaskCLIPConfig, load_clip
    from maskclip_cli.clip.methods import get_method
    from maskclip_cli.engine.build import build_segmenter

    torch.manual_seed(0)
    clip = load_clip(args.model, "none", device=args.device)
    classes = ["cat", "dog", "car", "person", "tree", "sky", "road", "building"]
    needs = get_method(args.method).needs
    random_backbones = {f"{need}_pretrained": "none" for need in needs}  # speed only
    seg = build_segmenter(classes, MaskCLIPConfig(templates="simple", short_side=args.short_side, method=args.method,
                                                  **random_backbones), clip=clip)
    cuda = seg.device.type == "cuda"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        root.mkdir()
        make_images(root, args.images, (640, 480))
        inputs = torch.stack([seg.prepare(Image.open(p).convert("RGB")) for p in sorted(root.iterdir())]).to(seg.device)
        seg.scores(inputs[: args.batch_size])  # warm-up
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for i in range(0, len(inputs), args.batch_size):
            seg.scores(inputs[i : i + args.batch_size])
        if cuda:
            torch.cuda.synchronize()
        bare = len(inputs) / (time.perf_counter() - start)
        bare_mem = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
        inputs_shape = tuple(inputs.shape[1:])
        del inputs
        options = LabelOptions(batch_size=args.batch_size, workers=args.workers, png_compression=args.png_compression)
        summary = label_folder(seg, root, Path(tmp) / "out", options)
        assert summary.labelled == args.images
        pipeline = summary.images_per_second
    print(f"model={args.model} method={args.method} device={seg.device} images={args.images} 640x480 -> short side {args.short_side} "
          f"batch={args.batch_size} workers={args.workers} threads={torch.get_num_threads()}")
    if cuda:
        print(f"GPU: {torch.cuda.get_device_name()}  peak memory of the bare forward: {bare_mem:.2f} GiB")
    if cuda and args.max_batch:
        print(f"largest batch that fits: {_largest_batch(seg, inputs_shape)}")
    print(f"bare forward  : {bare:8.1f} img/s")
    print(f"label pipeline: {pipeline:8.1f} img/s")
    print(f"ratio         : {pipeline / bare:.3f}x (goal >= 0.9x)")


def _largest_batch(seg: Segmenter, shape: tuple[int, ...], limit: int = 4096) -> int:
    """The largest power-of-two batch of ``shape`` inputs whose scores fit in GPU memory."""
    best, batch = 0, 1
    while batch <= limit:
        try:
            seg.scores(torch.zeros(batch, *shape, device=seg.device))
            torch.cuda.synchronize()
            best, batch = batch, batch * 2
        except torch.cuda.OutOfMemoryError:
            break
        finally:
            torch.cuda.empty_cache()
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["cpu", "gpu"])
    ap.add_argument("--images", type=int, default=None, help="cpu: 48 (a quarter at 1080p); gpu: 256")
    ap.add_argument("--sizes", default="640x480,1920x1080", help="cpu mode: image sizes WxH")
    ap.add_argument("--model", default="ViT-B-16")
    ap.add_argument("--short-side", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=None, help="cpu: 8; gpu: 32")
    ap.add_argument("--workers", type=int, default=None, help="cpu: 1; gpu: all cores but one")
    ap.add_argument("--writers", type=int, default=2)
    ap.add_argument("--png-compression", type=int, default=1)
    ap.add_argument("--max-batch", action="store_true", help="gpu: also find the largest batch that fits")
    ap.add_argument("--method", default="maskclip", help="gpu: dense-feature method (proxyclip, trident: with their second backbone)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    gpu = args.mode == "gpu"
    args.images = args.images or (256 if gpu else 48)
    args.batch_size = args.batch_size or (32 if gpu else 8)
    args.workers = args.workers if args.workers is not None else (max(1, (os.cpu_count() or 2) - 1) if gpu else 1)
    (gpu_pipeline if gpu else cpu_ceiling)(args)


if __name__ == "__main__":
    main()
