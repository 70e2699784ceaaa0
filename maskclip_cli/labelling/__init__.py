"""The `label` job: a folder of images -> a label folder, resumable."""

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "LabelOptions": ".label_job",
    "LabelSummary": ".label_job",
    "label_folder": ".label_job",
})
