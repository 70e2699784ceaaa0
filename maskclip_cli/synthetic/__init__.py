"""The synthetic world: generated scenes with exact masks and a tiny CLIP trained on them.

It lets the project check offline, with real numbers, that MaskCLIP's labels, MaskCLIP+
training and evaluation are right, where real CLIP weights and benchmarks cannot be had.
"""

from .world import BACKGROUND_PHRASE, CLASSES, Scene, WorldSpec, make_scene

__all__ = ["BACKGROUND_PHRASE", "CLASSES", "Scene", "WorldSpec", "make_scene"]
