"""Splitting a folder's images across independent processes (``--shard K/N``, torchrun ranks).

The split depends only on the folder's content: images sorted by file size (largest first, then
by path) are dealt greedily to the shard with the fewest bytes so far, so every process computes
the same split with no communication, each image belongs to exactly one shard, and shards carry
about equal bytes (a proxy for decode and write time). The whole folder is split, not just what
is left to do, so a shard's share never depends on what other shards have finished.
"""

from __future__ import annotations

import heapq
from pathlib import Path, PurePosixPath

from ..core.errors import MaskCLIPError


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` (K counted from 0, 0 <= K < N) -> (K, N)."""
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise MaskCLIPError(f"--shard must be K/N (e.g. 0/4), got '{text}'.") from None
    if not 0 <= k < n:
        raise MaskCLIPError(f"--shard K/N needs 0 <= K < N (K counts from 0), got '{text}'.")
    return k, n


def shard_of(paths: list[PurePosixPath], root: Path, shard: tuple[int, int]) -> list[PurePosixPath]:
    """The images of ``shard`` = (K, N) among ``paths`` (relative to ``root``), in path order."""
    k, n = shard
    if n == 1:
        return sorted(paths)
    sizes = {p: (root / p).stat().st_size for p in paths}
    # (bytes so far, shard): ties go to the lowest shard. Shard j is first dealt an image only once
    # shards 0..j-1 hold bytes, so shards past the image count never get one: the heap (and memory)
    # stays bounded by the folder, whatever N is.
    heap = [(0, i) for i in range(min(n, len(paths)))]
    mine = []
    for p in sorted(paths, key=lambda p: (-sizes[p], str(p))):
        load, i = heapq.heappop(heap)
        if i == k:
            mine.append(p)
        heapq.heappush(heap, (load + sizes[p], i))
    return sorted(mine)
