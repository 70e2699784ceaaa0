"""Train the synthetic world's tiny CLIP on one CPU thread, logging to a file.

    nohup python scripts/train_tiny_clip.py --out runs/tiny-clip &   # the committed run's settings

Writes ``<out>/checkpoint.pt`` (fp16 state dict, rewritten every --save-every steps),
``<out>/train.log`` and ``<out>/settings.json``. The committed asset under
``maskclip_cli/assets/synthetic/`` is a copy of such a run's output.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import torch

from maskclip_cli.core.hooks import ProgressHook
from maskclip_cli.synthetic.assets import MODEL_CONFIG
from maskclip_cli.synthetic.train_clip import TrainSettings, train_tiny_clip


class FileLog(ProgressHook):
    """Append one line every ``every`` steps: step, seconds, and the loop's live figures."""

    def __init__(self, path: Path, every: int):
        self.path, self.every, self.step, self.t0 = path, every, 0, time.time()

    def advance(self, n: int = 1, **fields: object) -> None:
        self.step += n
        if self.step % self.every == 0 or self.step == 1:
            figures = " ".join(f"{k}={v:.4g}" for k, v in fields.items())
            with self.path.open("a") as f:
                f.write(f"step={self.step} t={time.time() - self.t0:.0f}s {figures}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--config", default=str(MODEL_CONFIG))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--log-every", type=int, default=10)
    for name, value in asdict(TrainSettings()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = TrainSettings(**{k: getattr(args, k) for k in asdict(TrainSettings())})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "settings.json").write_text(json.dumps({"config": args.config, **asdict(settings)}, indent=2) + "\n")
    train_tiny_clip(args.config, args.out / "checkpoint.pt", settings, hook=FileLog(args.out / "train.log", args.log_every))


if __name__ == "__main__":
    main()
