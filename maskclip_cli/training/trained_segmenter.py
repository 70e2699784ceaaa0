"""A trained MaskCLIP+ network as a :class:`~maskclip_cli.engine.segmenter.Segmenter`, so ``label`` and
``eval`` drive it exactly as they drive MaskCLIP."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from .checkpointing import load_checkpoint
from .deeplab import NO_WEIGHTS, OUTPUT_STRIDE, DeepLabV2
from ..clip.loading import file_sha256
from ..clip.preprocess import to_model_input
from ..engine.segmenter import Segmenter


class TrainedSegmenter(Segmenter):
    """Wraps a :class:`DeepLabV2` and its checkpoint metadata (``meta`` of a checkpoint)."""

    def __init__(self, model: DeepLabV2, meta: dict, source: str | None = None):
        self.model, self.meta, self.source = model, meta, source
        self.class_names = list(meta["class_names"])
        self.device = next(model.parameters()).device

    def prepare(self, image: Image.Image) -> torch.Tensor:
        return to_model_input(image, self.meta["short_side"], OUTPUT_STRIDE, self.meta["mean"], self.meta["std"])

    @torch.no_grad()
    def scores(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.predict_logits(images).softmax(dim=1)

    def settings(self) -> dict:
        return {
            "segmenter": "maskclip+",
            "checkpoint": self.source,
            "backbone": self.meta["backbone"],
            "iteration": self.meta["iteration"],
            "classes": self.class_names,
            "short_side": self.meta["short_side"],
            "clip": self.meta["clip"],
        }


def load_segmenter(path: str | Path, device: str | torch.device = "cpu") -> TrainedSegmenter:
    """The network saved in a ``maskclip train`` checkpoint, in eval mode on ``device``."""
    path = Path(path)
    state = load_checkpoint(path, "cpu")
    meta = state["meta"]
    model = DeepLabV2(meta["backbone"], meta["text"], meta["groups"], weights=NO_WEIGHTS)
    model.load_state_dict(state["model"])
    source = f"{path}@{file_sha256(path)[:16]}"
    return TrainedSegmenter(model.to(device).eval(), meta, source)
