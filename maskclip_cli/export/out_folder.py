"""Where an export may go: never inside what it reads, nor around it.

``--overwrite`` replaces the format's own top-level names under ``--out`` (``images/``, ``data/``...);
with ``--out`` holding or inside the label folder or the photos, that would delete or mix into the
input, so such an ``--out`` is refused before anything is written.
"""

from __future__ import annotations

from pathlib import Path

from ..core.errors import MaskCLIPError


def check_out_folder(out: Path, inputs: dict[str, Path | None]) -> None:
    """A MaskCLIPError when ``out`` is, holds or lies inside one of ``inputs`` (name -> folder)."""
    target = out.resolve()
    for name, folder in inputs.items():
        if folder is None:
            continue
        source = folder.resolve()
        if target == source or target.is_relative_to(source) or source.is_relative_to(target):
            where = "is" if target == source else "is inside" if target.is_relative_to(source) else "holds"
            raise MaskCLIPError(f"--out {out} {where} the {name} {folder}: the export (and --overwrite) would "
                                "mix into or replace its files; choose a folder outside it.")
