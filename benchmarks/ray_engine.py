"""`--engine ray` against `--engine local` on the same images, on this machine.

Labels N small generated photos with the bundled tiny CLIP (maskclip_cli/assets/synthetic), once with the
local engine (DataLoader workers) and once per actor count with the Ray engine on a local cluster
started here (CPU actors). Prints images/s (labelling, and end to end with the actors' start-up), CPU
ms per image summed over every process (driver, workers, Ray's daemons and actors), the Ray/local
ratios, and whether the outputs are byte-identical. Needs the [ray] extra.

    python benchmarks/ray_engine.py [--images 200] [--size 160x120] [--cpus 2] [--actors 1 2]
"""

from __future__ import annotations

import argparse
import filecmp
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import torch
from PIL import Image

from maskclip_cli.engine.maskclip import MaskCLIP, MaskCLIPConfig
from maskclip_cli.labelling.label_job import LabelOptions, label_folder
from maskclip_cli.labelling.ray_engine import label_with_ray
from maskclip_cli.labelling.ray_options import RayOptions
from maskclip_cli.synthetic.assets import load_synthetic_clip


def cpu_seconds() -> float:
    """CPU time of this process, its reaped children and every live descendant (Ray's daemons and workers)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.NoSuchProcess:
            pass
    return total


def make_images(root: Path, count: int, size: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    for i in range(count):
        w, h = size
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / f"img{i:04d}.jpg", quality=90)


def segmenter() -> MaskCLIP:
    return MaskCLIP(load_synthetic_clip(), ["cat", "dog", "tree", "sky"], MaskCLIPConfig(templates="simple", short_side=96))


def same_outputs(a: Path, b: Path) -> bool:
    files = [p.relative_to(a) for p in a.rglob("*.png")]
    return bool(files) and all(filecmp.cmp(a / f, b / f, shallow=False) for f in files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", default="160x120")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster (and DataLoader workers - 1)")
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    import ray

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="maskclip-ray-bench-"))
    try:
        images = work / "images"
        images.mkdir()
        make_images(images, args.images, tuple(int(v) for v in args.size.split("x")))
        options = LabelOptions(workers=max(1, args.cpus - 1))
        model = segmenter()
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        local = label_folder(model, images, work / "local", options)
        rows = [("local", local.seconds, time.perf_counter() - t0, cpu_seconds() - cpu0, True)]
        ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="ERROR")
        for actors in args.actors:
            out = work / f"ray-{actors}"
            cpu0, t0 = cpu_seconds(), time.perf_counter()
            summary = label_with_ray(model, images, out, options, RayOptions(actors=(actors, actors), batch_size=16))
            rows.append((f"ray, {actors} actor(s)", summary.seconds, time.perf_counter() - t0, cpu_seconds() - cpu0,
                         same_outputs(work / "local", out)))
            assert summary.labelled == args.images, summary
        ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n = args.images
    print(f"{n} images {args.size}, bundled tiny CLIP (short side 96), {args.cpus} CPUs, torch 1 thread, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'engine':<20} {'img/s':>8} {'img/s e2e':>10} {'CPU ms/img':>11} {'x local img/s':>14} {'x local CPU':>12} identical")
    base = rows[0]
    for name, seconds, wall, cpu, same in rows:
        print(f"{name:<20} {n / seconds:>8.1f} {n / wall:>10.1f} {1000 * cpu / n:>11.1f} "
              f"{(n / seconds) / (n / base[1]):>14.2f} {cpu / base[3]:>12.2f} {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
