"""`maskclip overlay`: overlays for a label folder made earlier, without labelling again."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..review.overlay import write_overlays
from .app import app
from .common import RichHook, console, user_errors


@app.command("overlay")
def overlay(
    label_dir: Annotated[Path, typer.Argument(help="Output folder of `maskclip label` (holds classes.json, manifest.jsonl, labels/).")],
    images: Annotated[Path, typer.Option("--images", "-i", help="The folder of photos that was labelled.")],
    overwrite: Annotated[bool, typer.Option(help="Redraw overlays that already exist.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Write LABEL_DIR/overlays/<path>.jpg: each photo blended with its label colours, with a legend of the classes present.

    Exit code 1 when some photos could not be read, 2 on bad input.
    """
    with user_errors():
        summary = write_overlays(label_dir, images, missing_only=not overwrite, hook=RichHook(enabled=progress))
    console.print(f"{summary.written} overlays written, {summary.skipped} kept, {summary.failed} failed -> {label_dir / 'overlays'}")
    for source, error in summary.failures[:10]:
        console.print(f"  failed: {source}: {error}", highlight=False)
    if summary.failed:
        raise typer.Exit(1)
