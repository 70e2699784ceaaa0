"""Captions for training the tiny CLIP, worded with the same templates MaskCLIP uses at inference.

A scene is described by the set of visible colours in random order ("red, blue and green");
an empty scene by the background phrase. Using the inference templates means the text tower
is trained on exactly the prompt distribution it will see when MaskCLIP embeds class names.
"""

from __future__ import annotations

import numpy as np

from .world import BACKGROUND_PHRASE, CLASSES


def describe(present: tuple[str, ...], rng: np.random.Generator) -> str:
    """The class list in random order, joined like English; the background phrase when empty."""
    if not present:
        return BACKGROUND_PHRASE
    names = [present[i] for i in rng.permutation(len(present))]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def caption(present: tuple[str, ...], templates: tuple[str, ...], rng: np.random.Generator) -> str:
    """One random template filled with :func:`describe`."""
    return templates[rng.integers(len(templates))].format(describe(present, rng))


def class_set_id(present: tuple[str, ...]) -> int:
    """A bitmask of the visible classes: scenes with equal ids have interchangeable captions."""
    return sum(1 << CLASSES.index(name) for name in present)
