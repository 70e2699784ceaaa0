"""The demo's table over several seeds: mean and spread of each row's mIoU on the synthetic world.

    python benchmarks/synthetic_quality.py [--seeds 3] [--first-seed 0] [--no-maskclip-plus] [--online] [--val-scenes 100] [--methods]

Each seed draws its own training and held-out scenes and its own MaskCLIP+ initialisation;
the tiny CLIP is the committed one. The first row, uniformly random labels, is the floor every
method must clear. ``--online`` adds MaskCLIP+ trained online (the same MaskCLIP labeller scoring
every augmented crop) beside the offline run (labels written once). mIoU is over the background and the eight colour classes.

``--methods`` adds a row per dense-feature method (``--method``: maskclip, sclip, clearclip,
naclip; key smoothing and prompt denoising off, as the successors' tables), each also with PAMR,
scored on the same held-out scenes. The tiny CLIP is not the real one: the rows show that each
method runs and what it does here, not how the methods rank on real images.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from maskclip_cli.clip.methods import CLIP_ONLY_METHODS
from maskclip_cli.engine.maskclip import MaskCLIP
from maskclip_cli.synthetic.assets import load_synthetic_clip
from maskclip_cli.synthetic.demo import DemoSettings, maskclip_config, run_demo, score
from maskclip_cli.synthetic.world import CLASSES


def method_rows(clip, val_root: Path, spec) -> dict[str, float]:
    """mIoU (0-1) of each method without KS/PD, and with PAMR, on the held-out split at ``val_root``."""
    rows = {}
    for method in CLIP_ONLY_METHODS:
        for pamr in (False, True):
            cfg = maskclip_config(spec, method=method, key_smoothing=False, prompt_denoising=False, pamr=pamr)
            rows[f"--method {method}" + (" +PAMR" if pamr else "")] = score(MaskCLIP(clip, list(CLASSES), cfg), val_root)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--train-scenes", type=int, default=DemoSettings.train_scenes)
    ap.add_argument("--val-scenes", type=int, default=DemoSettings.val_scenes)
    ap.add_argument("--guided-iters", type=int, default=DemoSettings.guided_iters)
    ap.add_argument("--self-train-iters", type=int, default=DemoSettings.self_train_iters)
    ap.add_argument("--no-maskclip-plus", dest="maskclip_plus", action="store_false")
    ap.add_argument("--methods", action="store_true", help="also a row per --method, without and with PAMR")
    ap.add_argument("--online", action="store_true", help="also train MaskCLIP+ online (labeller on every crop)")
    ap.add_argument("--checkpoint", type=Path, default=None, help="tiny-CLIP weights (default: the committed ones)")
    args = ap.parse_args()
    clip = load_synthetic_clip(args.checkpoint) if args.checkpoint else load_synthetic_clip()
    rows: dict[str, list[float]] = {}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        settings = DemoSettings(seed=seed, train_scenes=args.train_scenes, val_scenes=args.val_scenes,
                                maskclip_plus=args.maskclip_plus, online=args.online, guided_iters=args.guided_iters,
                                self_train_iters=args.self_train_iters)
        with tempfile.TemporaryDirectory() as tmp:
            results = run_demo(Path(tmp), settings, clip)
            if args.methods:
                results.update(method_rows(clip, Path(tmp) / "val", settings.spec))
        for name, miou in results.items():
            rows.setdefault(name, []).append(miou * 100)
        print(f"seed {seed}: " + ", ".join(f"{k} {v * 100:.1f}" for k, v in results.items()), flush=True)
    print(f"\nmIoU (%) over {args.seeds} seeds, {args.val_scenes} held-out scenes each")
    print(f"{'method':28s} {'mean':>6s} {'std':>5s} {'min':>6s} {'max':>6s}")
    for name, values in rows.items():
        v = np.asarray(values)
        print(f"{name:28s} {v.mean():6.1f} {v.std():5.1f} {v.min():6.1f} {v.max():6.1f}")


if __name__ == "__main__":
    main()
