"""Looking at labels: overlays of photo and label map, and the HTML review report."""

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "OverlaySummary": ".overlay",
    "render_overlay": ".overlay",
    "write_overlay": ".overlay",
    "write_overlays": ".overlay",
    "ReportOptions": ".report",
    "ReportSummary": ".report",
    "write_report": ".report",
})
