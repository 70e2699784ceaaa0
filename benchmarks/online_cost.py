"""What online MaskCLIP+ costs next to offline, on this machine: training it/s, CPU ms per crop and peak memory.

    python benchmarks/online_cost.py [--labeller tiny|ViT-B-16] [--crop 96] [--batch 8] [--iters 20] [--threads 1]

Offline = `maskclip label` once over the training images (its ms per image is printed) and then
training from the stored PNGs; online = training with the frozen labeller scoring every augmented
crop. Both train DeepLabv2-ResNet-18 from random init on synthetic-world scenes with the same
batches. Each training runs in a fresh child process, so its peak resident memory (ru_maxrss) is
its own; "before" is the peak after loading CLIP and building the run, "peak" the peak at the end.
it/s is measured over the second half of the iterations (the first half includes warm-up).
``--labeller ViT-B-16`` uses open_clip's ViT-B/16 with random weights (speed only).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from maskclip_cli.clip.loading import LoadedCLIP, load_clip
from maskclip_cli.engine.maskclip import MaskCLIP
from maskclip_cli.labelling.label_job import LabelOptions, label_folder
from maskclip_cli.synthetic.assets import load_synthetic_clip
from maskclip_cli.synthetic.demo import maskclip_config
from maskclip_cli.synthetic.export import write_split
from maskclip_cli.synthetic.world import CLASSES
from maskclip_cli.training.class_text import from_maskclip
from maskclip_cli.training.loop import METRICS_FILE, TrainConfig, train
from maskclip_cli.training.online_labeller import OnlineLabeller


def _clip(name: str) -> LoadedCLIP:
    if name == "tiny":
        return load_synthetic_clip()
    torch.manual_seed(0)
    return load_clip(name, "none")


def _labeller_segmenter(clip: LoadedCLIP) -> MaskCLIP:
    """MaskCLIP as MaskCLIP+ uses it (no KS/PD), over the synthetic world's classes."""
    return MaskCLIP(clip, list(CLASSES), maskclip_config(key_smoothing=False, prompt_denoising=False))


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args: argparse.Namespace) -> None:
    """One training run; prints one JSON line."""
    torch.set_num_threads(args.threads)
    root = Path(args.root)
    seg = _labeller_segmenter(_clip(args.labeller))
    online = args.child == "online"
    cfg = TrainConfig(
        images=root / "images", labels=root / "labelled", out=root / f"run-{args.child}", backbone="resnet18",
        backbone_weights="none", iters=args.iters, batch_size=args.batch, crop_size=args.crop, photometric=False,
        workers=0, checkpoint_every=args.iters, log_every=args.iters // 2, amp=False, online=online,
    )
    from maskclip_cli.core.constants import IMAGENET_MEAN, IMAGENET_STD

    text = from_maskclip(seg)
    labeller = OnlineLabeller(seg.clip, list(seg.class_names), seg.config, IMAGENET_MEAN, IMAGENET_STD) if online else None
    del seg  # offline, CLIP is not needed once the classes are embedded (as in `maskclip train`)
    gc.collect()
    before = _peak_mb()
    summary = train(cfg, text, labeller=labeller)
    lines = [json.loads(ln) for ln in (cfg.out / METRICS_FILE).read_text().splitlines()]
    it_s = lines[-1]["it_per_s"]
    print(json.dumps({"mode": args.child, "it_per_s": it_s, "ms_per_crop": 1000 / (it_s * args.batch),
                      "before_mb": before, "peak_mb": _peak_mb(), "seconds": summary.seconds}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labeller", default="tiny", help="tiny (the committed synthetic CLIP) or an open_clip name with random weights")
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--crop", type=int, default=96)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--child", choices=["offline", "online"], help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_split(root, seed=7, count=args.images, layout="plain", split="train")
        seg = _labeller_segmenter(_clip(args.labeller))
        seg.config.short_side = args.crop
        began = time.perf_counter()
        label_folder(seg, root / "images", root / "labelled", LabelOptions(workers=0, overwrite=True))
        label_ms = (time.perf_counter() - began) * 1000 / args.images
        results = []
        for mode in ("offline", "online"):
            cmd = [sys.executable, __file__, "--child", mode, "--root", str(root), "--labeller", args.labeller,
                   "--crop", str(args.crop), "--batch", str(args.batch), "--iters", str(args.iters), "--threads", str(args.threads)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
    print(f"labeller {args.labeller}, DeepLabv2-ResNet-18, crop {args.crop}, batch {args.batch}, {args.iters} iterations, "
          f"{args.threads} CPU thread(s), torch {torch.__version__}")
    print(f"offline labelling (maskclip label, short side {args.crop}): {label_ms:.1f} ms per image, once")
    print(f"{'mode':8s} {'it/s':>6s} {'ms/crop':>8s} {'RSS before':>11s} {'peak RSS':>9s}")
    for r in results:
        print(f"{r['mode']:8s} {r['it_per_s']:6.2f} {r['ms_per_crop']:8.1f} {r['before_mb']:9.0f}MB {r['peak_mb']:7.0f}MB")
    off, on = results
    print(f"online/offline time per iteration: {off['it_per_s'] / on['it_per_s']:.2f}x; "
          f"peak memory +{on['peak_mb'] - off['peak_mb']:.0f} MB")


if __name__ == "__main__":
    main()
