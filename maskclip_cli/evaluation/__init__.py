"""Scoring labels: benchmark datasets and protocols, the confusion matrix, folder scoring."""

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "EvalResult": ".evaluate",
    "evaluate_segmenter": ".evaluate",
    "score_folders": ".evaluate",
    "ConfusionMatrix": ".metrics",
    "Scores": ".metrics",
    "DATASETS": ".datasets",
    "get_spec": ".datasets",
    "list_samples": ".datasets",
    "PROTOCOLS": ".protocols",
    "protocol_segmenter": ".protocols",
    "protocol_settings": ".protocols",
})
