"""maskclip: annotation-free semantic segmentation labels from CLIP (MaskCLIP / MaskCLIP+).

The public API::

    from maskclip_cli import load_clip, MaskCLIP, MaskCLIPConfig, dense_features
    clip = load_clip("ViT-B-16", pretrained="openai")
    seg = MaskCLIP(clip, ["batman", "joker"], MaskCLIPConfig(background=["sky", "wall"]))
    pred = seg.label_image(Image.open("x.jpg"))   # .labels, .confidence, .scores
"""

from .clip.dense import dense_features
from .clip.loading import LoadedCLIP, load_clip
from .engine.maskclip import MaskCLIP, MaskCLIPConfig
from .engine.segmenter import Prediction, Segmenter
from .errors import MaskCLIPError

__version__ = "0.1.0"
__all__ = [
    "LoadedCLIP",
    "MaskCLIP",
    "MaskCLIPConfig",
    "MaskCLIPError",
    "Prediction",
    "Segmenter",
    "dense_features",
    "load_clip",
]
