"""What a second backbone costs on the CPU: ms per image (wall and CPU) for ProxyCLIP (CLIP ViT-B/16
+ DINO ViT-B/8) and Trident (CLIP ViT-B/16 + DINO ViT-B/16 + SAM ViT-B) next to CLIP-only NACLIP,
and Trident's peak memory on a 12-megapixel photo. Random weights (speed only).

    python benchmarks/proxy_cost.py [--threads 1] [--repeat 3] [--trident] [--memory]

Dense features only (no text, no upsampling): the sclip protocol's image (short side 336, here
336x448) in 224-px windows with stride 112 (6 crops, one batch) for every method; ProxyCLIP also
at its authors' protocol (336-px windows, stride 112: 2 crops). ``--trident`` adds Trident at the
sclip windows (SAM at long side 1024 dominates). ``--memory`` runs Trident in a child process on a
4000x3000 photo resized to short side 448 (Trident's own protocol for VOC) with SAM fed the same
pixels, and prints its peak resident memory (Linux: /proc/self/status VmHWM) before the photo is
read (the three models) and at the end.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import open_clip
import torch
import torch.nn.functional as F

from maskclip_cli.clip.dense import dense_features
from maskclip_cli.clip.methods import DEFAULT_PROXY, DEFAULT_SAM, TRIDENT_PROXY
from maskclip_cli.clip.proxy.backbone import load_proxy, load_sam
from maskclip_cli.clip.proxy.proxyclip import proxyclip_features
from maskclip_cli.clip.proxy.trident import trident_features
from maskclip_cli.clip.preprocess import window_starts

CLIP_NORM = (open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD)


def crops(pixels: torch.Tensor, window: int, stride: int) -> torch.Tensor:
    h, w = pixels.shape[-2:]
    return torch.cat([pixels[..., t : t + window, l : l + window] for t in window_starts(h, window, stride) for l in window_starts(w, window, stride)])


def clip_norm(x: torch.Tensor) -> torch.Tensor:
    mean, std = (torch.tensor(t).view(1, 3, 1, 1) for t in CLIP_NORM)
    return (x - mean) / std


def timed(fn, repeat: int) -> tuple[float, float]:
    """Best wall and CPU seconds over ``repeat`` runs after one warm-up."""
    fn()
    wall, cpu = [], []
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return min(wall), min(cpu)


@torch.no_grad()
def speed(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    visual = open_clip.create_model("ViT-B-16").visual.eval()
    dino8 = load_proxy(DEFAULT_PROXY, pretrained=False)
    pixels = torch.rand(1, 3, 336, 448)
    sclip = crops(pixels, 224, 112)
    authors = crops(pixels, 336, 112)
    runs = {
        "naclip (sclip windows)": lambda: dense_features(visual, clip_norm(sclip), method="naclip"),
        "proxyclip dino-b/8 (sclip windows)": lambda: proxyclip_features(visual, dino8.model, clip_norm(sclip), dino8.normalise(sclip)),
        "naclip (336/112 windows)": lambda: dense_features(visual, clip_norm(authors), method="naclip"),
        "proxyclip dino-b/8 (336/112 windows)": lambda: proxyclip_features(visual, dino8.model, clip_norm(authors), dino8.normalise(authors)),
    }
    if args.trident:
        dino16, sam = load_proxy(TRIDENT_PROXY, pretrained=False), load_sam(DEFAULT_SAM, pretrained=False)
        runs["trident dino-b/16 + sam-b (sclip windows)"] = lambda: trident_features(
            visual, *CLIP_NORM, dino16, sam, pixels, crop=224, stride=112, crop_batch=6)
    base: tuple[float, float] | None = None
    for name, fn in runs.items():
        wall, cpu = timed(fn, 1 if "trident" in name else args.repeat)
        base = base or (wall, cpu)  # the first run: naclip at the sclip windows
        print(f"{name:42s} wall {wall * 1000:8.0f} ms/image (x{wall / base[0]:5.2f})   cpu {cpu * 1000:8.0f} ms/image (x{cpu / base[1]:5.2f})")
    print("(x: ratio to naclip at the sclip windows)")


def _peak_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited from the parent across exec)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024


@torch.no_grad()
def memory_child() -> None:
    torch.manual_seed(0)
    visual = open_clip.create_model("ViT-B-16").visual.eval()
    dino16, sam = load_proxy(TRIDENT_PROXY, pretrained=False), load_sam(DEFAULT_SAM, pretrained=False)
    photo = torch.rand(1, 3, 3000, 4000)  # 12 MP
    before = _peak_mb()
    pixels = F.interpolate(photo, size=(448, 597), mode="bilinear", align_corners=False, antialias=True)
    del photo
    w0 = time.perf_counter()
    feats, _ = trident_features(visual, *CLIP_NORM, dino16, sam, pixels)
    print(json.dumps({"grid": list(feats.shape[-2:]), "wall_s": round(time.perf_counter() - w0, 1), "peak_mb_before": round(before),
                      "peak_mb": round(_peak_mb())}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--trident", action="store_true")
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        return memory_child()
    print(f"torch {torch.__version__}, {args.threads} thread(s), random weights")
    speed(args)
    if args.memory:
        out = subprocess.run([sys.executable, __file__, "--memory-child", "--threads", str(args.threads)], capture_output=True, text=True, check=True)
        print("trident, 12 MP photo at short side 448:", out.stdout.strip())


if __name__ == "__main__":
    main()
