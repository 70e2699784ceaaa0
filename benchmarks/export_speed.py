"""Speed and memory of each `maskclip export` format on a generated label folder.

Writes N label maps (blobs of 8 classes on a background, 1 % ignore pixels), confidence maps and
JPEG photos, then runs `maskclip export` once per format in a fresh process and prints wall time,
CPU ms per image and that process's peak RSS (VmHWM; run with two sizes to see that memory stays
flat). The process imports the whole CLI (torch included), so its RSS starts near 0.9 GiB.

    python benchmarks/export_speed.py [--images 1000] [--size 640x480] [--runs coco,coco --instances,hf,...]

label-studio needs label-studio-sdk (run with the Python of a venv that has it).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from label_folders import write_label_folder  # noqa: E402

CLASSES = ["background", "person", "car", "tree", "road", "sky", "dog", "building", "bicycle"]
RUNS = ["coco", "coco --instances", "yolo-seg", "cvat-mask", "hf", "label-studio --image-root-url /data/local-files/?d=photos"]
# the export in this process, then its peak resident set (VmHWM is per process image, reset by exec)
CHILD = """import sys
from maskclip_cli.cli import app
try:
    app(sys.argv[1:], standalone_mode=False)
finally:
    print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])
"""


def label_map(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    labels = np.zeros((h, w), np.uint8)
    for _ in range(rng.integers(3, 9)):
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (int(rng.integers(10, w // 4)), int(rng.integers(10, h // 4)))
        cv2.ellipse(labels, centre, axes, float(rng.uniform(0, 180)), 0, 360, int(rng.integers(1, len(CLASSES))), -1)
    labels[rng.random((h, w)) < 0.01] = 255
    return labels


class _Maps(Mapping):
    """Label maps made on demand from a per-image seed, so the generator holds one at a time."""

    def __init__(self, n: int, w: int, h: int):
        self.keys_ = [f"img{i:05d}.jpg" for i in range(n)]
        self.w, self.h = w, h

    def __getitem__(self, key: str) -> np.ndarray:
        return label_map(np.random.default_rng(self.keys_.index(key)), self.w, self.h)

    def __iter__(self):
        return iter(self.keys_)

    def __len__(self) -> int:
        return len(self.keys_)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--runs", default=",".join(RUNS), help="comma-separated format runs (format plus flags)")
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        write_label_folder(root / "labels", root / "images", _Maps(args.images, w, h), class_names=CLASSES)
        print(f"{args.images} images {w}x{h} generated in {time.perf_counter() - start:.0f} s")
        print("(startup: the same process running `maskclip --help`; net = minus startup)")
        print(f"{'format':<18} {'wall s':>7} {'net img/s':>9} {'net CPU ms/img':>14} {'peak RSS MiB':>13}")
        startup_wall = startup_cpu = 0.0
        for run in ["startup", *args.runs.split(",")]:
            fmt, *flags = run.split()
            out = root / f"out-{fmt}{len(flags)}"
            cmd = [sys.executable, "-c", CHILD, "--help"] if run == "startup" else [
                sys.executable, "-c", CHILD, "export", str(root / "labels"), "--format", fmt,
                *([] if fmt == "label-studio" else ["--images", str(root / "images")]),  # it links photos by URL
                "--out", str(out), "--no-progress", *flags]
            start = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            output = proc.stdout.read().decode()
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - start
            if os.waitstatus_to_exitcode(status) != 0:
                raise SystemExit(f"{run} failed: {proc.stderr.read().decode()}")
            cpu = usage.ru_utime + usage.ru_stime
            peak_mib = int(output.split()[-1]) / 1024
            if run == "startup":
                startup_wall, startup_cpu = wall, cpu
                print(f"{run[:18]:<18} {wall:>7.1f} {'':>9} {'':>14} {peak_mib:>13.0f}  ({cpu:.1f} s CPU)", flush=True)
                continue
            net_wall, net_cpu_ms = wall - startup_wall, (cpu - startup_cpu) * 1000 / args.images
            print(f"{run[:18]:<18} {wall:>7.1f} {args.images / net_wall:>9.1f} {net_cpu_ms:>14.1f} {peak_mib:>13.0f}", flush=True)


if __name__ == "__main__":
    main()
