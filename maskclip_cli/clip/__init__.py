"""CLIP as MaskCLIP uses it: weights loading, dense features per last-block method, text embeddings."""

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "LoadedCLIP": ".loading",
    "load_clip": ".loading",
    "from_model": ".loading",
    "dense_features": ".dense",
    "output_stride": ".dense",
    "get_templates": ".templates",
    "class_embeddings": ".text_embeddings",
    "to_model_input": ".preprocess",
})
