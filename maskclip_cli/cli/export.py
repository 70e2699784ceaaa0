"""`maskclip export`: a label folder -> COCO, Ultralytics YOLO segmentation, CVAT mask, Label Studio
pre-annotation or Hugging Face datasets files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..export.formats import FORMATS
from ..export.run import export_folder
from ..export.writer import ExportOptions
from .app import app
from .common import RichHook, comma_list, console, user_errors
from .job_output import print_failures_and_exit, print_job


@app.command("export")
def export(
    label_dir: Annotated[Path, typer.Argument(help="Output folder of `maskclip label` (holds classes.json, manifest.jsonl, labels/).")],
    format: Annotated[str, typer.Option("--format", "-f", help=f"{' | '.join(FORMATS)}: COCO JSON (COCO-Stuff style RLE), Ultralytics YOLO segmentation, CVAT Segmentation mask 1.1, Label Studio tasks with brush pre-annotations, Hugging Face datasets Parquet.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the export into (must be empty unless --overwrite).")],
    images: Annotated[Optional[Path], typer.Option("--images", "-i", help="The folder of photos that was labelled: copied (hard-linked when possible) into the export. Required by yolo-seg and hf.")] = None,
    instances: Annotated[bool, typer.Option(help="coco: one annotation per connected component of a class instead of one per class and image.")] = False,
    min_area: Annotated[int, typer.Option(min=0, help="yolo-seg: drop components and fill holes smaller than this many pixels.")] = ExportOptions.min_area,
    val_fraction: Annotated[float, typer.Option(min=0, max=1, help="coco, yolo-seg, hf: share of images in the validation split (per-image hash, deterministic).")] = ExportOptions.val_fraction,
    seed: Annotated[int, typer.Option(help="coco, yolo-seg, hf: seed of the train/val split.")] = ExportOptions.seed,
    exclude: Annotated[Optional[list[str]], typer.Option("--exclude", "-x", help="Class names to leave out (coco, yolo-seg, label-studio) or to make unlabelled (cvat-mask; hf: ignore 255), e.g. --exclude background; repeat or comma-separate.")] = None,
    image_root_url: Annotated[Optional[str], typer.Option(help="label-studio: URL the photo paths are joined onto, e.g. '/data/local-files/?d=photos' (Label Studio local files) or 'https://host/photos'.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier export in --out (--out never is, holds or lies inside LABEL_DIR or --images).")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Export pseudo labels for another trainer or labelling tool.

    Images that failed to label, whose manifest line is invalid or whose files cannot be read are skipped and listed in OUT/failed.jsonl (exit code 1); bad input, and an option the format does not take, exit with code 2.
    """
    with user_errors():
        options = ExportOptions(format=format, images=images, overwrite=overwrite, instances=instances,
                                min_area=min_area, val_fraction=val_fraction, seed=seed, image_root_url=image_root_url,
                                exclude=tuple(comma_list(exclude)))
        summary = export_folder(label_dir, out, options, RichHook(enabled=progress))
    print_job(summary, "exported", out)
    if summary.warned:
        console.print(f"{summary.warned} exported image(s) with a warning (listed above)")
    print_failures_and_exit(summary)
