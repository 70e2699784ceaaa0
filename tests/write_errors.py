"""Folders that refuse writes for real, for the tests of write errors (issue 22).

Tests usually run as root, and root ignores file permissions, so a ``chmod`` proves nothing there.
As root a folder is made read-only with a read-only bind mount (writes fail with EROFS, as on a
read-only share) and a full disk is a small tmpfs; as another user ``chmod`` does (EACCES). Where
neither works (no mount rights, e.g. an unprivileged container) the test is skipped with the reason.
"""

from __future__ import annotations

import os
import stat
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest


def _mount(*args: str) -> str | None:
    """Run ``mount ARGS``; the error text when it fails."""
    try:
        done = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if done.returncode == 0 else (done.stderr.strip() or f"mount exited {done.returncode}")


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


@contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """``path`` (a folder, with everything under it) read-only for this process while inside."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [path, *path.rglob("*")] if not p.is_symlink()}
        for p, mode in modes.items():
            p.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        try:
            yield path
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    error = _mount("--bind", str(path), str(path))
    if error:
        pytest.skip(f"root ignores permissions and a read-only bind mount is not possible here: {error}")
    try:
        error = _mount("-o", "remount,bind,ro", str(path))
        if error:
            pytest.skip(f"cannot remount {path} read-only: {error}")
        yield path
    finally:
        _umount(path)


@contextmanager
def small_disk(path: Path, kib: int) -> Iterator[Path]:
    """A tmpfs of ``kib`` KiB mounted on the new folder ``path``: writes beyond it fail with ENOSPC."""
    path.mkdir(parents=True)
    error = _mount("-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(path))
    if error:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root and mount rights): {error}")
    try:
        yield path
    finally:
        _umount(path)
