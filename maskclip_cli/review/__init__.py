"""Looking at labels: overlays of photo and label map, and the HTML review report."""

from .overlay import OverlaySummary, render_overlay, write_overlay, write_overlays
from .report import ReportOptions, ReportSummary, write_report

__all__ = ["OverlaySummary", "ReportOptions", "ReportSummary", "render_overlay", "write_overlay", "write_overlays", "write_report"]
