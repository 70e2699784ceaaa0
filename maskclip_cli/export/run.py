"""Running an export: one image at a time from a label folder into a format's writer.

Memory holds one image's maps (plus the manifest's offsets); a failed image (recorded as failed by
the label job, whose manifest line is invalid, or whose files cannot be read now) is skipped, listed
in the summary and in ``failed.jsonl``. An output folder that is not empty is refused unless
``overwrite``, and then only the paths the format writes are replaced; an output folder that is,
holds or lies inside the label folder or the photo folder is refused (:mod:`.out_folder`). Options
the format does not take are refused (:func:`.writer.check_options`), and what the format cannot hold
by its writer's ``check_input``, all before anything is written.

A photo of another size than its label map, or label ids beyond the class list, are exported (as the
map says) with one warning line per image, counted in the summary. An error of the output folder
itself (read-only, disk full) stops the export with one message, leaving no index file, so the
partial export never looks complete; an input error costs only its image.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core._io import atomic_write, is_output_error, make_probe
from ..core.errors import MaskCLIPError, ParameterError
from ..core.hooks import SILENT, ProgressHook
from ..core.job_summary import JobSummary
from ..core.constants import IGNORE_INDEX
from ..formats.image_entry import LABEL, inside
from ..formats.images import image_size
from ..formats.label_folder import LabelFolder
from .formats import FORMATS
from .out_folder import check_out_folder
from .writer import ExportOptions, check_options, kept_classes

FAILED_FILE = "failed.jsonl"
EXPORT_MARKER = ".maskclip-export"  # written first into every export: what --overwrite may replace


@dataclass
class ExportSummary(JobSummary):
    warned: int = 0  # exported images with a warning (photo size, unknown label ids), one line each

    @property
    def exported(self) -> int:
        return self.done


def _check_writable(out: Path) -> None:
    """Before --overwrite deletes anything: can a file be created in ``out``?"""
    try:
        make_probe(out).unlink()
    except OSError as exc:
        raise MaskCLIPError(f"Cannot write into --out {out}: {exc.strerror or exc}.") from exc


def _prepare_out(out: Path, outputs: tuple[str, ...], overwrite: bool) -> None:
    """An empty (or new) ``out``, or, with ``overwrite``, an earlier maskclip export there (it carries
    :data:`EXPORT_MARKER`) with the format's own names removed. A folder the user filled is never
    cleared: the format's names (``images/``, ``README.md``, ``data/``) may be their own files."""
    if out.exists() and not out.is_dir():
        raise MaskCLIPError(f"--out {out} is a file, not a folder.")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise MaskCLIPError(f"Output folder {out} is not empty; pass --overwrite to replace its export, or choose another --out.")
        if not (out / EXPORT_MARKER).is_file():
            raise MaskCLIPError(f"--out {out} is not empty and holds no maskclip export (no {EXPORT_MARKER} file), so "
                                "--overwrite will not delete anything there; choose an empty --out (an export made "
                                "before 0.3.0 has no marker: remove it by hand).")
        _check_writable(out)
        try:
            for name in (*outputs, FAILED_FILE):
                path = out / name
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
        except OSError as exc:
            raise MaskCLIPError(f"Cannot remove the earlier export in {out}: {exc.strerror or exc} "
                                f"({exc.filename}); it may be partly removed.") from exc
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MaskCLIPError(f"Cannot create output folder {out}: {exc.strerror or exc}") from exc


def _warnings(labels: np.ndarray, photo: Path | None, folder: LabelFolder) -> list[str]:
    """What the formats would write wrongly without a word: a photo of another size than its label map
    (sizes, masks and polygons follow the map), label ids beyond the class list (left out)."""
    found = []
    h, w = labels.shape
    if photo is not None:
        pw, ph = image_size(photo, folder.record.exif if folder.record else True)
        if (pw, ph) != (w, h):
            found.append(f"the photo is {pw}x{ph} but its label map {w}x{h}: the export follows the label map")
    n = len(folder.class_names)
    if labels.max() >= n:  # a max first: bincount (not np.unique's sort) only where ids reach past the list
        counts = np.bincount(labels.ravel(), minlength=256)
        beyond = [i for i in range(n, 256) if counts[i] and i != IGNORE_INDEX]
        if beyond:
            found.append(f"label id(s) {', '.join(map(str, beyond[:5]))} beyond the {n} classes of classes.json: "
                         "those pixels are left out")
    return found


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
    try:  # first: an export killed at any point can be replaced with --overwrite
        atomic_write(out / EXPORT_MARKER, lambda tmp: Path(tmp).write_text(json.dumps({"format": options.format}) + "\n"))
    except OSError as exc:
        raise MaskCLIPError(f"Cannot write the export into {out}: {exc.strerror or exc}") from exc
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
                    photo = inside(options.images, entry.source, "source", confine=False)
                    if not photo.is_file():
                        raise MaskCLIPError(f"photo not found: {photo}")
                maps = folder.read_maps(entry)
                warnings = _warnings(maps[LABEL.name], photo, folder)
                writer.add(entry, maps, photo)
                summary.done += 1
                for warning in warnings:
                    hook.warn(f"{entry.source}: {warning}")
                summary.warned += bool(warnings)
            except (MaskCLIPError, OSError) as exc:
                if isinstance(exc, OSError) and is_output_error(exc, out):
                    raise
                summary.fail(entry.source, str(exc))
                failed_file = failed_file or open(out / FAILED_FILE, "w", encoding="utf-8")
                failed_file.write(json.dumps({"source": entry.source, "error": str(exc)}) + "\n")
        writer.close()
        if failed_file is not None:
            failed_file.close()
    except OSError as exc:  # the output folder itself (read-only, disk full): not one image's fault
        _abort(writer, failed_file)
        raise MaskCLIPError(f"Cannot write the export into {out}: {exc.strerror or exc}. The export there is "
                            "incomplete (its index file is not written); fix this and export again with --overwrite.") from exc
    except BaseException:
        _abort(writer, failed_file)  # an interrupted export leaves no half-joined index file
        raise
    finally:
        hook.finish()
        summary.seconds = time.perf_counter() - start
    return summary


def _abort(writer, failed_file) -> None:
    """Remove the writer's temporary files; close failed.jsonl (a full disk may refuse its last bytes)."""
    try:
        writer.abort()
    except OSError:  # a full disk refused the flush of a part file on close: closed now, so again to remove it
        writer.abort()
    if failed_file is not None:
        try:
            failed_file.close()
        except OSError:
            pass
