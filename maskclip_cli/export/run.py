"""Running an export: one image at a time from a label folder into a format's writer.

Memory holds one image's maps (plus the manifest's offsets); a failed image (recorded as failed by
the label job, whose manifest line is invalid, or whose files cannot be read now) is skipped, listed
in the summary and in ``failed.jsonl``. An output folder that is not empty is refused unless
``overwrite``, and then only the paths the format writes are replaced; an output folder that is,
holds or lies inside the label folder or the photo folder is refused (:mod:`.out_folder`). Options
the format does not take are refused (:func:`.writer.check_options`), and what the format cannot hold
by its writer's ``check_input``, all before anything is written.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import MaskCLIPError, ParameterError
from ..core.hooks import SILENT, ProgressHook
from ..core.job_summary import JobSummary
from ..formats.image_entry import inside
from ..formats.label_folder import LabelFolder
from .formats import FORMATS
from .out_folder import check_out_folder
from .writer import ExportOptions, check_options, kept_classes

FAILED_FILE = "failed.jsonl"


@dataclass
class ExportSummary(JobSummary):
    @property
    def exported(self) -> int:
        return self.done


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


def export_folder(label_dir: str | os.PathLike, out: str | os.PathLike, options: ExportOptions, hook: ProgressHook = SILENT) -> ExportSummary:
    """Export the label folder ``label_dir`` into ``out`` in ``options.format``."""
    label_dir, out = Path(label_dir), Path(out)

    folder = LabelFolder.open(label_dir)
    writer_class = FORMATS[options.format]
    check_options(options, writer_class.options)
    if writer_class.needs_images and options.images is None:
        raise ParameterError(f"format {options.format} needs the photos: pass {{}}.", "images")
    kept_classes(folder, options.exclude)  # checked before anything is written
    if hasattr(writer_class, "check_input"):  # what the format cannot hold (names, URLs, libraries)
        writer_class.check_input(folder, options)
    entries = folder.reader(hook)
    if not len(entries):
        raise MaskCLIPError(f"{label_dir} has no image entries in its manifest ({entries.bad_count} invalid line(s)).")
    check_out_folder(out, {"label folder": label_dir, "photo folder": options.images})
    _prepare_out(out, writer_class.outputs, options.overwrite)
    try:
        writer = writer_class(folder, out, options)
    except OSError as exc:
        raise MaskCLIPError(f"Cannot write the export into {out}: {exc.strerror or exc}") from exc
    summary = ExportSummary(total=len(entries))
    failed_file = None
    start = time.perf_counter()
    hook.start(summary.total, f"export {options.format}")
    try:
        for entry in entries:
            hook.advance(1)
            try:
                if not entry.ok:
                    raise MaskCLIPError(f"not labelled: {entry.error or entry.status}")
                photo = None
                if options.images is not None:
                    photo = inside(options.images, entry.source, "source")
                    if not photo.is_file():
                        raise MaskCLIPError(f"photo not found: {photo}")
                writer.add(entry, folder.read_maps(entry), photo)
                summary.done += 1
            except (MaskCLIPError, OSError) as exc:
                summary.fail(entry.source, str(exc))
                failed_file = failed_file or open(out / FAILED_FILE, "w", encoding="utf-8")
                failed_file.write(json.dumps({"source": entry.source, "error": str(exc)}) + "\n")
        writer.close()
    except OSError as exc:  # the output folder itself (read-only, disk full): not one image's fault
        writer.abort()
        raise MaskCLIPError(f"Cannot write the export into {out}: {exc.strerror or exc}") from exc
    except BaseException:
        writer.abort()  # an interrupted export leaves no half-joined index file
        raise
    finally:
        hook.finish()
        summary.seconds = time.perf_counter() - start
        if failed_file is not None:
            failed_file.close()
    return summary
