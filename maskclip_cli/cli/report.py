"""`maskclip report`: one static HTML page to review a label folder in a browser."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..formats.label_folder import LabelFolder
from ..review.report import ReportOptions, write_report
from .app import app
from .common import RichHook, console, user_errors


@app.command("report")
def report(
    label_dir: Annotated[Path, typer.Argument(help="Output folder of `maskclip label` (holds classes.json, manifest.jsonl, labels/).")],
    images: Annotated[Optional[Path], typer.Option("--images", "-i", help="The folder of photos that was labelled: overlays are drawn for the page when LABEL_DIR has no overlays/.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="The HTML file to write (an existing file is replaced only if it is a maskclip report); thumbnails go to <name>_files/ next to it. Default: LABEL_DIR/report.html.")] = None,
    max_images: Annotated[int, typer.Option(min=1, help="Labelled images read for pixel statistics and thumbnails (a seeded random sample), plus the lowest-confidence ones (a fifth as many, at most 30).")] = ReportOptions.max_images,
    per_class: Annotated[int, typer.Option(min=0, help="Thumbnails shown per class.")] = ReportOptions.per_class,
    seed: Annotated[int, typer.Option(help="Seed of the random sample.")] = ReportOptions.seed,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Write a review page: run settings, per-class pixel share / image count / confidence, a confidence histogram, the lowest-confidence images, failures, and overlay thumbnails by class."""
    with user_errors():
        options = ReportOptions(images=images, max_images=max_images, per_class=per_class, seed=seed)
        summary = write_report(label_dir, out or LabelFolder(label_dir).report_path, options, RichHook(enabled=progress))
    console.print(f"{summary.images} images, {summary.sampled} sampled, {summary.thumbnails} thumbnails in "
                  f"{summary.seconds:.1f} s -> {summary.path}")
