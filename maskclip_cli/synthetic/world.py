"""The synthetic world: seeded scenes of coloured shapes on a textured background, with exact masks.

Classes are colours, because a CLIP small enough to train on a CPU learns colour reliably and
shape poorly; the shape of each object (disc, ellipse, box, triangle) is a nuisance it must
ignore. Label 0 is the background; class ``i`` (1-based) is ``CLASSES[i - 1]``. The background
is low-saturation, mid-brightness texture, so no background pixel looks like any class colour.
A scene is a pure function of ``(seed, index)``: splits are reproducible and never overlap when
their seeds differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

# name -> RGB in [0, 1]
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.10, 0.10),
    "orange": (1.00, 0.55, 0.00),
    "yellow": (0.95, 0.90, 0.10),
    "green": (0.10, 0.75, 0.15),
    "cyan": (0.10, 0.85, 0.90),
    "blue": (0.10, 0.20, 0.90),
    "purple": (0.60, 0.15, 0.80),
    "white": (0.97, 0.97, 0.97),
}
CLASSES: tuple[str, ...] = tuple(COLOURS)
BACKGROUND_PHRASE = "background"
SHAPES = ("disc", "ellipse", "box", "triangle")


@dataclass(frozen=True)
class WorldSpec:
    """What scenes look like. The defaults are the world the committed tiny CLIP was trained on."""

    size: int = 96
    max_objects: int = 3
    empty_fraction: float = 0.25
    min_radius: int = 12
    max_radius: int = 26


@dataclass
class Scene:
    """One generated scene: RGB image, exact (H, W) uint8 labels, and the visible classes."""

    image: Image.Image
    labels: np.ndarray
    present: tuple[str, ...]


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Muted colour times smooth low-frequency noise, plus pixel noise: (size, size, 3) in [0, 1]."""
    grey = rng.uniform(0.25, 0.55)
    tint = rng.uniform(-0.08, 0.08, size=3)
    coarse = rng.normal(0.0, 0.07, size=(rng.integers(3, 9),) * 2).astype(np.float32)
    blobs = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC))
    fine = rng.normal(0.0, 0.03, size=(size, size, 3))
    return grey + tint + blobs[..., None] + fine


def _shape_mask(rng: np.random.Generator, size: int, radius: int) -> np.ndarray:
    """A bool (size, size) mask of one random shape of about ``radius`` pixels, fully drawn (no
    anti-aliasing), so the ground truth is exactly the pixels painted."""
    cx, cy = rng.integers(radius // 2, size - radius // 2, size=2)
    mask = Image.new("1", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    kind = SHAPES[rng.integers(len(SHAPES))]
    if kind == "disc":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=1)
    elif kind == "ellipse":
        rx, ry = radius, int(radius * rng.uniform(0.5, 0.8))
        if rng.random() < 0.5:
            rx, ry = ry, rx
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=1)
    elif kind == "box":
        rx, ry = int(radius * rng.uniform(0.6, 1.0)), int(radius * rng.uniform(0.6, 1.0))
        draw.rectangle([cx - rx, cy - ry, cx + rx, cy + ry], fill=1)
    else:
        angle = rng.uniform(0, 2 * np.pi) + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3])
        draw.polygon(list(zip(cx + radius * np.cos(angle), cy + radius * np.sin(angle))), fill=1)
    return np.asarray(mask, dtype=bool)


def _paint(rng: np.random.Generator, canvas: np.ndarray, mask: np.ndarray, colour: tuple[float, float, float]) -> None:
    """Paint ``mask`` with the class colour, jittered per object and noisy per pixel."""
    base = np.clip(np.asarray(colour) + rng.uniform(-0.07, 0.07, size=3), 0, 1) * rng.uniform(0.85, 1.0)
    noise = rng.normal(0.0, 0.03, size=(int(mask.sum()), 3))
    canvas[mask] = base + noise


def make_scene(seed: int, index: int, spec: WorldSpec = WorldSpec()) -> Scene:
    """Scene number ``index`` of the world seeded by ``seed``; objects are painted in order, so
    later ones occlude earlier ones and the labels record exactly what is visible."""
    rng = np.random.default_rng([seed, index])
    canvas = _background(rng, spec.size)
    labels = np.zeros((spec.size, spec.size), dtype=np.uint8)
    n_objects = 0 if rng.random() < spec.empty_fraction else int(rng.integers(1, spec.max_objects + 1))
    for cls in rng.choice(len(CLASSES), size=n_objects, replace=False):
        mask = _shape_mask(rng, spec.size, int(rng.integers(spec.min_radius, spec.max_radius + 1)))
        _paint(rng, canvas, mask, COLOURS[CLASSES[cls]])
        labels[mask] = cls + 1
    image = Image.fromarray((np.clip(canvas, 0, 1) * 255).round().astype(np.uint8))
    present = tuple(CLASSES[i - 1] for i in np.unique(labels) if i > 0)
    return Scene(image, labels, present)
