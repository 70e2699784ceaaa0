"""MaskCLIP+: DeepLabv2 with CLIP's text classifier, trained on pseudo labels (offline or online)."""

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "TrainConfig": ".config",
    "TrainSummary": ".loop",
    "setup": ".loop",
    "step": ".loop",
    "train": ".loop",
    "ClassText": ".class_text",
    "class_text_for_labels": ".class_text",
    "from_maskclip": ".class_text",
    "load_labels_clip": ".class_text",
    "class_text_from_clip": ".class_text",
    "OnlineLabeller": ".online_labeller",
    "labelling_record": ".online_labeller",
    "DeepLabV2": ".deeplab",
    "TrainedSegmenter": ".trained_segmenter",
    "load_segmenter": ".trained_segmenter",
})
