"""Atomic file writes and file hashing, shared by every writer in the package.

Every file is written to a temporary name in the same folder and renamed into place, so an
interrupted run never leaves a half-written output. The temporary file (``mkstemp``: mode 0600) is
given the mode an ordinary ``open`` would give under the process's umask (0644 under 022), so a
shared dataset stays readable by others.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable


def _read_umask() -> int:
    """The process umask. Linux shows it in /proc; elsewhere it is read by setting and restoring it,
    which is done once, at import, before any writer thread exists."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_read_umask()


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, _FILE_MODE)
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: object) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8"))


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})  # never an input's fault


def is_output_error(exc: OSError, out: Path) -> bool:
    """Whether ``exc`` is the output folder's (full, read-only, not writable), not one input file's:
    such an error stops a job with one line instead of failing image after image."""
    if exc.errno in OUTPUT_ERRNOS:
        return True
    names = [Path(n) for n in (exc.filename, exc.filename2) if isinstance(n, (str, os.PathLike))]
    return any(n.resolve().is_relative_to(out.resolve()) for n in names)


def make_probe(folder: Path) -> Path:
    """Create ``folder`` (if missing) and an empty file in it: proof that the folder is writable (and, for
    the Ray engine, a file every node must see). The caller removes it. Raises OSError."""
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".maskclip-write-test-{os.getpid()}"
    probe.write_bytes(b"")
    return probe
