"""A lock on a label folder, so two label runs never write the same images.

Each run holds a lock file in ``OUT/.maskclip-locks/`` (:attr:`LabelFolder.locks_dir`) for its whole life: ``all`` for an
unsharded run or a merge, ``shard-K-of-N`` for one shard. Shards of one split share the folder;
anything else conflicts (two unsharded runs, a run and a shard, shards of different splits, the
same shard twice). The file names the holder (pid, host) for the error message and carries an
``flock``, which the kernel drops when the holder dies, even by ``kill -9``: a lock file whose
flock can be taken is stale and is removed. A guard flock makes check-and-create atomic.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from ..core.errors import MaskCLIPError
from ..formats.label_folder import LabelFolder


def lock_name(shard: tuple[int, int] | None) -> str:
    return "all" if shard is None else f"shard-{shard[0]}-of-{shard[1]}"


def _conflicts(a: str, b: str) -> bool:
    if a == b or "all" in (a, b):
        return True
    return a.rsplit("-of-", 1)[1] != b.rsplit("-of-", 1)[1]  # shards of different splits overlap


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return f"pid {info['pid']} on host {info['host']}, running `{info['command']}` since {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "an unknown process"


def _remove_if_stale(path: Path) -> str | None:
    """Removes ``path`` when no live process holds its flock; returns the dead holder, else None."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return "a run that already ended"
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    holder = _holder(path)
    path.unlink(missing_ok=True)
    os.close(fd)
    return holder


@contextmanager
def _guard(out_dir: Path) -> Iterator[Path]:
    folder = LabelFolder(out_dir).locks_dir
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".guard", "a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        yield folder


class FolderLock:
    """Held from construction until :meth:`release`; a context manager too."""

    def __init__(self, out_dir: Path, shard: tuple[int, int] | None = None, command: str = "maskclip label"):
        self.name = lock_name(shard)
        self.stale: list[str] = []  # holders of stale locks that were removed (for a notice)
        self.siblings: list[str] = []  # live shards of the same split sharing the folder ("shard-K-of-N")
        self._fd: int | None = None
        with _guard(out_dir) as folder:
            for path in sorted(folder.glob("*.lock")):
                other = path.name[: -len(".lock")]
                dead = _remove_if_stale(path)
                if dead is not None:
                    self.stale.append(dead)
                elif _conflicts(self.name, other):
                    raise MaskCLIPError(
                        f"{out_dir} is in use by another label run ({other}): {_holder(path)}. "
                        "Wait for it to finish or stop it (a killed run's lock is recovered automatically)."
                    )
                else:
                    self.siblings.append(other)
            self.path = folder / f"{self.name}.lock"
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            info = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                    "started": time.strftime("%Y-%m-%d %H:%M:%S %z")}
            os.write(self._fd, json.dumps(info).encode())

    def release(self) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def merge_when_idle(out_dir: Path, merge: Callable[[], bool]) -> bool:
    """Call ``merge`` (and return its answer) unless a live run holds a lock on ``out_dir``;
    runs asking for a lock meanwhile wait for it."""
    with _guard(out_dir) as folder:
        if any(_remove_if_stale(path) is None for path in folder.glob("*.lock")):
            return False
        return merge()


def holders(out_dir: Path) -> list[str]:
    """Who holds live locks on ``out_dir`` (for an error message)."""
    with _guard(out_dir) as folder:
        return [_holder(p) for p in sorted(folder.glob("*.lock")) if _remove_if_stale(p) is None]
