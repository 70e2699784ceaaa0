"""Running an export: one image at a time from a label folder into a format's writer.

Memory holds one image's maps (plus the manifest's offsets); a failed image (recorded as failed by
the label job, or whose files cannot be read now) is skipped, listed in the summary and in
``failed.jsonl``. An output folder that is not empty is refused unless ``overwrite``, and then only
the paths the format writes are replaced.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import MaskCLIPError, ParameterError
from ..formats.label_folder import LabelFolder
from ..core.hooks import SILENT, ProgressHook
from .formats import FORMATS
from .out_folder import check_out_folder
from .writer import ExportOptions, kept_classes

FAILED_FILE = "failed.jsonl"
KEPT_FAILURES = 1000  # in the summary; failed.jsonl lists them all


@dataclass
class ExportSummary:
    total: int = 0
    exported: int = 0
    failed: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return self.exported / self.seconds if self.seconds > 0 else 0.0


def _prepare_out(out: Path, outputs: tuple[str, ...], overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise MaskCLIPError(f"--out {out} is a file, not a folder.")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise MaskCLIPError(f"Output folder {out} is not empty; pass --overwrite to replace its export, or choose another --out.")
        for name in (*outputs, FAILED_FILE):
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MaskCLIPError(f"Cannot create output folder {out}: {exc.strerror or exc}") from exc


def export_folder(label_dir: Path, out: Path, options: ExportOptions, hook: ProgressHook = SILENT) -> ExportSummary:
    """Export the label folder ``label_dir`` into ``out`` in ``options.format``."""

    folder = LabelFolder.open(label_dir)
    writer_class = FORMATS[options.format]
    if writer_class.needs_images and options.images is None:
        raise ParameterError(f"format {options.format} needs the photos: pass {{}}.", "images")
    kept_classes(folder, options.exclude)  # checked before anything is written
    check_out_folder(out, {"label folder": label_dir, "photo folder --images": options.images})
    if hasattr(writer_class, "check_options"):  # format-specific checks (names, URLs, libraries)
        writer_class.check_options(folder, options)
    _prepare_out(out, writer_class.outputs, options.overwrite)
    writer = writer_class(folder, out, options)
    summary = ExportSummary(total=sum(1 for _ in folder.entries()))
    failed_file = None
    start = time.perf_counter()
    hook.start(summary.total, f"export {options.format}")
    try:
        for entry in folder.entries():
            hook.advance(1)
            try:
                if entry.status != "ok":
                    raise MaskCLIPError(f"not labelled: {entry.error or entry.status}")
                photo = None
                if options.images is not None:
                    photo = options.images / entry.source
                    if not photo.is_file():
                        raise MaskCLIPError(f"photo not found: {photo}")
                writer.add(entry, folder.read_labels(folder.stem_of(entry)), folder.read_entry_confidence(entry), photo)
                summary.exported += 1
            except (MaskCLIPError, OSError) as exc:
                summary.failed += 1
                if len(summary.failures) < KEPT_FAILURES:
                    summary.failures.append((entry.source, str(exc)))
                failed_file = failed_file or open(out / FAILED_FILE, "w", encoding="utf-8")
                failed_file.write(json.dumps({"source": entry.source, "error": str(exc)}) + "\n")
        writer.close()
    except BaseException:
        writer.abort()  # an interrupted export leaves no half-joined index file
        raise
    finally:
        hook.finish()
        summary.seconds = time.perf_counter() - start
        if failed_file is not None:
            failed_file.close()
    return summary
