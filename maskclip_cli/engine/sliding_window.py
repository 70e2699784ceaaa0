"""Where sliding windows start along one axis (MMSegmentation's 'slide' scheme)."""

from __future__ import annotations


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Starts of windows of ``window`` px every ``stride`` px covering ``length``; the last one is
    pushed back to end exactly at ``length``. A short axis gets one window starting at 0."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts
