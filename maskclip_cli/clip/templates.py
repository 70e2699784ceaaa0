"""Prompt template sets used to turn class names into CLIP text embeddings.

``vild`` (default, the paper's): CLIP's 80 ImageNet templates plus ViLD's 5 scene templates (85).
``imagenet``: the 80 ImageNet templates (the usual setting of SCLIP/ClearCLIP/NACLIP tables).
``simple``: a single "a photo of a {}." for quick experiments.
"""

from __future__ import annotations

from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

from ..core.errors import MaskCLIPError

IMAGENET = tuple(t("{}") for t in OPENAI_IMAGENET_TEMPLATES)
VILD_SCENE = (
    "There is a {} in the scene.",
    "There is the {} in the scene.",
    "this is a {} in the scene.",
    "this is the {} in the scene.",
    "this is one {} in the scene.",
)
TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    "vild": IMAGENET + VILD_SCENE,
    "imagenet": IMAGENET,
    "simple": ("a photo of a {}.",),
}


def get_templates(name: str) -> tuple[str, ...]:
    if name not in TEMPLATE_SETS:
        raise MaskCLIPError(f"Unknown template set '{name}'; choose one of {', '.join(TEMPLATE_SETS)}.")
    return TEMPLATE_SETS[name]
