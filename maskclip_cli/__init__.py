"""maskclip: annotation-free semantic segmentation labels from CLIP (MaskCLIP / MaskCLIP+).

The public API::

    from maskclip_cli import load_clip, MaskCLIP, MaskCLIPConfig, dense_features
    clip = load_clip("ViT-B-16", pretrained="openai")
    seg = MaskCLIP(clip, ["batman", "joker"], MaskCLIPConfig(background=["sky", "wall"]))
    pred = seg.label_image(Image.open("x.jpg"))   # .labels, .confidence, .scores

Names are imported on first use, so ``import maskclip_cli`` (and ``maskclip --help``) is instant.
"""

from ._lazy import lazy_exports
from ._version import __version__

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "LabelFolder": ".formats.label_folder",
    "LabelRecord": ".record",
    "LoadedCLIP": ".clip.loading",
    "MaskCLIP": ".engine.maskclip",
    "MaskCLIPConfig": ".engine.maskclip",
    "MaskCLIPError": ".errors",
    "Prediction": ".engine.segmenter",
    "Segmenter": ".engine.segmenter",
    "dense_features": ".clip.dense",
    "label_folder": ".labelling.label_job",
    "load_clip": ".clip.loading",
})
__all__ = [*__all__, "__version__"]
