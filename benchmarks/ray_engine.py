"""`--engine ray` against `--engine local` on the same images, on this machine.

Labels N small generated photos with the bundled tiny CLIP (maskclip_cli/assets/synthetic), once with the
local engine (DataLoader workers) and once per actor count with the Ray engine on a local cluster
started here (CPU actors). Prints images/s (the whole run, and steady: after the first results), CPU
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
import ray  # first: it brings psutil (ray's third-party folder) onto the path
import psutil
import torch
from PIL import Image

from maskclip_cli.core.hooks import ProgressHook
from maskclip_cli.engine.maskclip import MaskCLIP, MaskCLIPConfig
from maskclip_cli.labelling.label_job import LabelOptions, label_folder
from maskclip_cli.labelling.ray_engine import label_with_ray
from maskclip_cli.labelling.ray_options import RayOptions
from maskclip_cli.synthetic.assets import load_synthetic_clip


def cpu_times() -> dict[int, float]:
    """CPU seconds by process: this one with its reaped children (key 0) and every live descendant
    (Ray's daemons and workers) with theirs."""
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    times = {0: sum(u.ru_utime + u.ru_stime for u in usage)}
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()
            times[child.pid] = t.user + t.system + t.children_user + t.children_system
        except psutil.NoSuchProcess:
            pass
    return times


def cpu_used(before: dict[int, float]) -> float:
    """CPU seconds since ``before``, per process: a process that started since counts whole; one that
    ended meanwhile loses its last stretch (Ray keeps its workers for the session, so few do)."""
    return sum(max(0.0, t - before.get(pid, 0.0)) for pid, t in cpu_times().items())


class Steady(ProgressHook):
    """Images/s once the first results are in: the pipeline's rate without the actors' start-up."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, int]] = []

    def advance(self, n: int = 1, **fields: object) -> None:
        self.marks.append((time.perf_counter(), n))

    def rate(self) -> float:
        """Images after the first delivered block, over the time since it arrived."""
        first = self.marks[0][0]
        later = [(t, n) for t, n in self.marks if t > first + 1e-3]
        return sum(n for _, n in later) / (later[-1][0] - first) if later else float("nan")


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
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="maskclip-ray-bench-"))
    try:
        images = work / "images"
        images.mkdir()
        make_images(images, args.images, tuple(int(v) for v in args.size.split("x")))
        options = LabelOptions(workers=max(1, args.cpus - 1))
        model = segmenter()
        cpu0 = cpu_times()
        hook = Steady()
        local = label_folder(model, images, work / "local", options, hook)
        rows = [("local", local.seconds, hook.rate(), cpu_used(cpu0), True)]
        ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="ERROR")
        for actors in args.actors:
            out = work / f"ray-{actors}"
            cpu0 = cpu_times()
            hook = Steady()
            summary = label_with_ray(model, images, out, options, RayOptions(actors=(actors, actors), batch_size=16), hook)
            rows.append((f"ray, {actors} actor(s)", summary.seconds, hook.rate(), cpu_used(cpu0),
                         same_outputs(work / "local", out)))
            assert summary.labelled == args.images, summary
        ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n = args.images
    print(f"{n} images {args.size}, bundled tiny CLIP (short side 96), {args.cpus} CPUs, torch 1 thread, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'engine':<20} {'img/s':>8} {'steady img/s':>13} {'CPU ms/img':>11} {'x local img/s':>14} {'x local CPU':>12} identical")
    base = rows[0]
    for name, seconds, steady, cpu, same in rows:
        print(f"{name:<20} {n / seconds:>8.1f} {steady:>13.1f} {1000 * cpu / n:>11.1f} "
              f"{(n / seconds) / (n / base[1]):>14.2f} {cpu / base[3]:>12.2f} {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
