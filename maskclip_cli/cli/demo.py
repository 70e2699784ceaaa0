"""`maskclip demo`: the whole pipeline on the synthetic world, offline, in a few minutes on a CPU."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..synthetic.assets import CHECKPOINT, load_synthetic_clip
from ..synthetic.demo import ZERO_SHOT_ROWS, DemoSettings, run_demo
from ..synthetic.stages import UNSEEN
from ..synthetic.world import CLASSES
from .app import app
from .common import QuickGelu, RichHook, resolve_device, user_errors


@app.command("demo")
def demo(
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Keep the generated scenes, pseudo labels and trained network here; its maskclip-plus/ run is replaced (default: a temporary folder, deleted).")] = None,
    seed: Annotated[int, typer.Option(min=0, help="Which synthetic scenes and training seed to use.")] = 0,
    checkpoint: Annotated[Optional[Path], typer.Option(help="Tiny-CLIP weights for the synthetic world (default: the ones shipped with maskclip).")] = None,
    train_scenes: Annotated[int, typer.Option(min=1, help="Scenes labelled by MaskCLIP to train MaskCLIP+ on.")] = DemoSettings.train_scenes,
    val_scenes: Annotated[int, typer.Option(min=1, help="Held-out scenes every row is scored on.")] = DemoSettings.val_scenes,
    guided_iters: Annotated[int, typer.Option(min=1, help="MaskCLIP+ iterations on MaskCLIP's pseudo labels.")] = DemoSettings.guided_iters,
    self_train_iters: Annotated[int, typer.Option(min=0, help="Annotation-free self-training iterations after the guided ones (README: below guided here).")] = DemoSettings.self_train_iters,
    zero_shot_iters: Annotated[Optional[int], typer.Option(min=0, help="Iterations of the zero-shot run (first tenth guided); 0: no zero-shot rows. Default 100 (200 with --full).")] = None,
    zero_shot_self_train: Annotated[bool, typer.Option("--zs-self-train", help="Also zero-shot self-training rows (README: below guided here).")] = False,
    full: Annotated[bool, typer.Option("--full", help="The longer version: zero-shot runs of 200 iterations instead of 100.")] = False,
    maskclip_plus: Annotated[bool, typer.Option("--maskclip-plus/--no-maskclip-plus", help="Also train and score MaskCLIP+ (the slow part).")] = True,
    quick_gelu: QuickGelu = None,
    device: Annotated[str, typer.Option(help="cpu (the default: the tiny CLIP and the small networks gain little from a GPU), auto (GPU if available), or cuda[:N].")] = "cpu",
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Score MaskCLIP's ablation and MaskCLIP+ on generated scenes with exact ground truth.

    Uses a tiny CLIP trained on the synthetic world (shipped with maskclip), so it needs no
    download. Prints one table of mIoU over the background and eight colour classes, then the
    paper's zero-shot setting (seen colours with ground truth), seen and unseen mIoU.
    """
    hook = RichHook(enabled=progress)
    with user_errors(), tempfile.TemporaryDirectory(prefix="maskclip-demo-") as tmp:
        options = dict(seed=seed, train_scenes=train_scenes, val_scenes=val_scenes, maskclip_plus=maskclip_plus,
                       guided_iters=guided_iters, self_train_iters=self_train_iters, zero_shot_self_train=zero_shot_self_train)
        if zero_shot_iters is not None:
            options["zero_shot_iters"] = zero_shot_iters
        settings = DemoSettings.full(**options) if full else DemoSettings(**options)
        clip = load_synthetic_clip(checkpoint or CHECKPOINT, resolve_device(device), hook, quick_gelu)
        results = run_demo(out or Path(tmp), settings, clip, hook)
    table = Table(title=f"synthetic world, seed {seed}, {val_scenes} held-out scenes", caption="mIoU over background + 8 colours")
    table.add_column("method")
    table.add_column("mIoU (%)", justify="right")
    for name, miou in results.items():
        table.add_row(name, f"{miou * 100:.1f}")
    out_console = Console()
    out_console.print(table)
    if ZERO_SHOT_ROWS[0] in results:
        out_console.print(f"Zero-shot rows: ground truth for the background and {len(CLASSES) - len(UNSEEN)} colours, none for the unseen "
                          f"{', '.join(UNSEEN)}; mIoU over the seen (background included) or the unseen classes.")
    if not (settings.self_train_iters or settings.zero_shot_self_train):
        out_console.print("Self-training rows (--zs-self-train, --self-train-iters N) are off: at this CPU scale they do "
                          "not improve on guided learning (README, 'Self-training').")
