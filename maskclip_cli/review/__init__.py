"""Looking at labels: overlays of photo and label map, and the HTML review report."""

from .overlay import OverlaySummary, render_overlay, write_overlay, write_overlays

__all__ = ["OverlaySummary", "render_overlay", "write_overlay", "write_overlays"]
