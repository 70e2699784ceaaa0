"""maskclip: annotation-free semantic segmentation labels from CLIP (MaskCLIP / MaskCLIP+).

The public API::

    from maskclip_cli import load_clip, MaskCLIP, MaskCLIPConfig, dense_features
    clip = load_clip("ViT-B-16", pretrained="openai")
    seg = MaskCLIP(clip, ["batman", "joker"], MaskCLIPConfig(background=["sky", "wall"]))
    pred = seg.label_image(Image.open("x.jpg"))   # .labels, .confidence, .scores

Names are imported on first use, so ``import maskclip_cli`` (and ``maskclip --help``) is instant.
This is the package's only lazy-export map; each entry names the module that defines the name.
"""

from .core._lazy import lazy_exports
from ._version import __version__

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "ExportOptions": ".export.writer",
    "LabelFolder": ".formats.label_folder",
    "LabelOptions": ".labelling.options",
    "LabelRecord": ".core.record",
    "LoadedCLIP": ".clip.loading",
    "MaskCLIP": ".engine.maskclip",
    "MaskCLIPConfig": ".engine.config",
    "MaskCLIPError": ".core.errors",
    "Prediction": ".engine.segmenter",
    "ProgressHook": ".core.hooks",
    "ReportOptions": ".review.report",
    "Segmenter": ".engine.segmenter",
    "TqdmHook": ".core.hooks",
    "TrainConfig": ".training.config",
    "dense_features": ".clip.dense",
    "evaluate_segmenter": ".evaluation.evaluate",
    "export_folder": ".export.run",
    "label_folder": ".labelling.label_job",
    "load_clip": ".clip.loading",
    "pamr": ".engine.pamr",
    "train": ".training.loop",
    "write_overlays": ".review.overlay",
    "write_report": ".review.report",
})
__all__ = [*__all__, "__version__"]
