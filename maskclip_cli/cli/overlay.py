"""`maskclip overlay`: overlays for a label folder made earlier, without labelling again."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..review.overlay import write_overlays
from .app import app
from .common import RichHook, user_errors
from .job_output import print_failures_and_exit, print_job


@app.command("overlay")
def overlay(
    label_dir: Annotated[Path, typer.Argument(help="Output folder of `maskclip label` (holds classes.json, manifest.jsonl, labels/).")],
    images: Annotated[Path, typer.Option("--images", "-i", help="The folder of photos that was labelled.")],
    overwrite: Annotated[bool, typer.Option(help="Redraw overlays that already exist.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Write LABEL_DIR/overlays/<path>.jpg: each photo blended with its label colours, with a legend of the classes present.

    Exit code 1 when some photos could not be read (or an overlay path holds a file that is not an overlay, left as it is), 2 on bad input.
    """
    with user_errors():
        summary = write_overlays(label_dir, images, missing_only=not overwrite, hook=RichHook(enabled=progress))
    print_job(summary, "overlays written", label_dir / "overlays", "skipped (overlay exists, or not labelled)")
    print_failures_and_exit(summary)
