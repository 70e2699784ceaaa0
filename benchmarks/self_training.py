"""Self-training vs guided learning on the synthetic world, over seeds (issue 19).

    OMP_NUM_THREADS=1 python benchmarks/self_training.py [--seeds 3] [--first-seed 0] [--iters 100] [--switch 0.5] [--batch-size 2] [--jobs 2]

Per seed: training and held-out scenes, MaskCLIP's pseudo labels (no KS/PD), then two MaskCLIP+
trunks, MaskCLIP-guided for the first ``--switch`` of ``--iters`` (the paper: 1/10 after ImageNet
pre-training; here the network starts from random weights, so the default switches at 1/2, once
guided learning has mostly converged), each branched at the switch
(synthetic.stages.train_branches: every branch is an exact ``--resume`` of it):

- zero-shot (transductive; ground truth for the background and five colours, none for the
  unseen orange, cyan, white): guided only vs + self-training as the authors' code (labels from
  the training pass, every pixel) vs + self-training with the defaults (mean teacher, CBST);
- annotation-free: guided only vs + self-training as the authors' code vs the defaults (mean
  teacher, CBST, MaskCLIP's label kept below confidence 0.9 and outside each class's top half).

Prints mIoU (all / seen / unseen, %) as mean +- std over seeds, the per-seed figures, and CPU time.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import tempfile
import time
from dataclasses import replace
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from maskclip_cli.synthetic.assets import load_synthetic_clip
from maskclip_cli.synthetic.demo import DemoSettings, train_config, val_scores, write_world
from maskclip_cli.synthetic.export import write_split
from maskclip_cli.synthetic.stages import GUIDED_ONLY, guided_only, stage_scores, train_branches
from maskclip_cli.training.class_text import from_maskclip

AUTHORS = {"self_train_ema": 0.0, "self_train_portion": 1.0, "self_train_anchor": 0.0}  # the authors' assign_label
SETTINGS = {
    "zero-shot": {GUIDED_ONLY: guided_only(), "+ self-training (authors')": AUTHORS, "+ self-training (default)": {}},
    "annotation-free": {GUIDED_ONLY: guided_only(), "+ self-training (authors')": AUTHORS,
                        "+ self-training (default)": {}},
}


def run_seed(root: Path, s: DemoSettings, clip) -> dict[tuple[str, str], tuple[float, float, float]]:
    write_split(root / "val", s.val_world, s.val_scenes, layout="pascal-context", split="val", spec=s.spec)
    text = from_maskclip(write_world(root, s, clip))
    rows = {}
    for setting, branches in SETTINGS.items():
        trunk = train_config(s, root, zero_shot=setting == "zero-shot", name=setting)
        trunk = replace(trunk, val_every=trunk.iters)
        for name, run in train_branches(trunk, text, branches).items():
            sc = stage_scores(val_scores(run, trunk.iters))
            rows[(setting, name)] = (sc.miou * 100, sc.seen * 100, sc.unseen * 100)
    return rows


def seed_rows(seed: int, args: argparse.Namespace) -> dict:
    torch.set_num_threads(1)
    guided = max(1, round(args.iters * args.switch))
    s = DemoSettings(seed=seed, train_scenes=args.train_scenes, val_scenes=args.val_scenes, guided_iters=guided,
                     self_train_iters=args.iters - guided, batch_size=args.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        return run_seed(Path(tmp), s, load_synthetic_clip())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--iters", type=int, default=100, help="total schedule")
    ap.add_argument("--switch", type=float, default=0.5, help="the guided fraction of it (paper: 0.1)")
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--train-scenes", type=int, default=DemoSettings.train_scenes)
    ap.add_argument("--val-scenes", type=int, default=DemoSettings.val_scenes)
    ap.add_argument("--jobs", type=int, default=1, help="seeds trained in parallel processes")
    args = ap.parse_args()
    table: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    wall, cpu = time.perf_counter(), time.process_time()
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for seed, rows in zip(seeds, pool.map(seed_rows, seeds, [args] * len(seeds))):
            for key, value in rows.items():
                table.setdefault(key, []).append(value)
                print(f"seed {seed} {key[0]:15s} {key[1]:28s} mIoU {value[0]:5.1f} seen {value[1]:5.1f} unseen {value[2]:5.1f}",
                      flush=True)
    print(f"\n{args.seeds} seeds, {args.iters} iterations (first {max(1, round(args.iters * args.switch))} guided), batch {args.batch_size}, "
          f"{args.train_scenes} training / {args.val_scenes} held-out scenes; mIoU % mean +- std")
    print(f"| setting | MaskCLIP+ | mIoU | seen | unseen |\n|---|---|---|---|---|")
    for (setting, name), values in table.items():
        v = np.asarray(values)
        cells = " | ".join(f"{m:.1f} +- {sd:.1f}" for m, sd in zip(v.mean(0), v.std(0)))
        print(f"| {setting} | {name} | {cells} |")
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"\nwall {time.perf_counter() - wall:.0f} s, CPU {time.process_time() - cpu + children.ru_utime + children.ru_stime:.0f} s")


if __name__ == "__main__":
    main()
