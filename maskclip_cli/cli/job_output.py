"""The end of every per-image command (label, export, overlay): one summary line, the first
failures, and exit code 1 when some images failed."""

from __future__ import annotations

from pathlib import Path

import typer

from ..core.job_summary import JobSummary
from .common import console

SHOWN_FAILURES = 10


def print_job(summary: JobSummary, done: str, out: Path, skipped: str = "skipped", prefix: str = "") -> None:
    """``3 labelled, 4 skipped (already done), 1 failed of 8 images in 2.0 s (1.50 img/s) -> OUT``."""
    console.print(
        f"{prefix}{summary.done} {done}, {summary.skipped} {skipped}, {summary.failed} failed of {summary.total} images "
        f"in {summary.seconds:.1f} s ({summary.images_per_second:.2f} img/s) -> {out}"
    )


def print_failures_and_exit(summary: JobSummary) -> None:
    """The first failures, one line each, then exit code 1 if there were any."""
    for source, error in summary.failures[:SHOWN_FAILURES]:
        console.print(f"  failed: {source}: {error}", highlight=False, soft_wrap=True)
    if summary.failed > SHOWN_FAILURES:
        console.print(f"  ... and {summary.failed - SHOWN_FAILURES} more")
    if summary.failed:
        raise typer.Exit(1)
