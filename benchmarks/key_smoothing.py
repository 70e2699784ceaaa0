"""Key smoothing's cost: the regrouped product k^T (k p^T) against the former row-block similarity.

Prints wall and CPU milliseconds per image for each form at ViT-B/16 sizes (K = 768 key channels)
on a few grids and class counts; the similarity form is written out here as it was before 0.3.0.

    OMP_NUM_THREADS=1 python benchmarks/key_smoothing.py
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from maskclip_cli.engine.key_smoothing import key_smooth


def row_blocks(logits: torch.Tensor, keys: torch.Tensor, max_elements: int = 1 << 24) -> torch.Tensor:
    """The former computation: (rows x hw) blocks of the similarity, each times the probabilities."""
    flat = (100 * logits).softmax(dim=1).flatten(2)
    k = F.normalize(keys.flatten(2), dim=1)
    b, n = k.shape[0], k.shape[2]
    rows = max(1, max_elements // (b * n))
    out = torch.empty_like(flat)
    for i in range(0, n, rows):
        out[:, :, i : i + rows] = ((k[:, :, i : i + rows].transpose(1, 2) @ k) @ flat.transpose(1, 2)).transpose(1, 2)
    return out


def timed(fn, *args, repeat: int) -> tuple[float, float]:
    fn(*args)  # warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeat):
        fn(*args)
    return (time.perf_counter() - wall) * 1000 / repeat, (time.process_time() - cpu) * 1000 / repeat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)
    # (grid, classes): a 512-px short side; a 4:1 photo at short side 512; a large class list
    for (h, w), c in (((32, 32), 21), ((32, 32), 150), ((32, 128), 150)):
        keys, logits = torch.randn(1, 768, h, w), torch.randn(1, c, h, w) * 0.05
        old = timed(row_blocks, logits, keys, repeat=args.repeat)
        new = timed(key_smooth, logits, keys, repeat=args.repeat)
        print(f"grid {h}x{w} ({h * w} tokens), {c:3d} classes: similarity rows {old[0]:8.1f} ms wall {old[1]:8.1f} ms CPU | "
              f"k^T(k p^T) {new[0]:7.1f} ms wall {new[1]:7.1f} ms CPU | {old[1] / new[1]:5.1f}x less CPU")


if __name__ == "__main__":
    main()
