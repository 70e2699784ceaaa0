"""Atomic writes: outputs get the permissions of an ordinary file under the umask (issue 9, defect 4)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

_WRITE_OUTPUTS = textwrap.dedent(
    """
    import os, stat, sys
    from pathlib import Path
    os.umask(int(sys.argv[2], 8))
    import numpy as np
    from maskclip_cli.core._io import atomic_write, write_json
    from maskclip_cli.formats.label_files import palette, write_confidence, write_label_png
    from maskclip_cli.formats.image_entry import ImageEntry
    from maskclip_cli.formats.manifest import Manifest
    out = Path(sys.argv[1])
    write_label_png(out / "labels" / "a.png", np.zeros((4, 4), np.uint8), palette(2))
    write_confidence(out / "confidence" / "a.png", np.ones((4, 4), np.float32))
    write_confidence(out / "confidence" / "a.npy", np.ones((4, 4), np.float32))
    write_json(out / "classes.json", {"classes": []})
    atomic_write(out / "checkpoint.pt", lambda tmp: Path(tmp).write_bytes(b"x"))
    manifest = Manifest(out, fresh=True)
    manifest.add(ImageEntry("a.png", maps={"label": "labels/a.png", "confidence": "confidence/a.png"}, settings="t"))
    manifest.close()
    for p in sorted(out.rglob("*")):
        if p.is_file():
            print(p.relative_to(out), oct(stat.S_IMODE(p.stat().st_mode)))
    """
)


@pytest.mark.parametrize(("umask", "mode"), [("022", "0o644"), ("027", "0o640"), ("002", "0o664")])
def test_outputs_get_the_umask_permissions(tmp_path, umask, mode):
    """Labels, confidence maps, classes.json, manifest and checkpoints are not left at mkstemp's 0600."""
    result = subprocess.run([sys.executable, "-c", _WRITE_OUTPUTS, str(tmp_path), umask],
                            capture_output=True, text=True, check=True)
    lines = result.stdout.split("\n")[:-1]
    assert len(lines) == 6
    assert all(line.endswith(" " + mode) for line in lines), lines
