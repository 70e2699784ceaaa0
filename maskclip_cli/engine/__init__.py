"""The segmenters and their refinements: MaskCLIP, key smoothing, prompt denoising, sliding windows."""

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "MaskCLIP": ".maskclip",
    "MaskCLIPConfig": ".maskclip",
    "validate_classes": ".maskclip",
    "Prediction": ".segmenter",
    "Segmenter": ".segmenter",
    "key_smooth": ".key_smoothing",
    "prompt_denoise": ".prompt_denoising",
    "upsample_argmax": ".upsampling",
})
