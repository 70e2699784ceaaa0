"""A trained MaskCLIP+ network as a :class:`~maskclip_cli.engine.segmenter.Segmenter`, so ``label`` and
``eval`` drive it exactly as they drive MaskCLIP."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from PIL import Image

from ..core._io import file_sha256
from ..clip.preprocess import resize_uint8
from ..engine.segmenter import Segmenter
from ..core.record import LabelRecord, TrainedNetwork
from .checkpointing import checkpoint_record, load_checkpoint
from .deeplab import NO_WEIGHTS, OUTPUT_STRIDE, DeepLabV2


class TrainedSegmenter(Segmenter):
    """Wraps a :class:`DeepLabV2` and its checkpoint metadata (``meta`` of a checkpoint)."""

    def __init__(self, model: DeepLabV2, meta: dict, source: str | None = None, sha256: str | None = None):
        self.model, self.meta, self.source, self.sha256 = model, meta, source, sha256
        self.class_names = list(meta["class_names"])
        self.device = next(model.parameters()).device
        self.mean, self.std = tuple(meta["mean"]), tuple(meta["std"])

    def resize(self, image: Image.Image) -> torch.Tensor:
        return resize_uint8(image, self.meta["short_side"], OUTPUT_STRIDE)

    def input_short_side(self) -> int | None:
        return int(self.meta["short_side"])

    @torch.no_grad()
    def scores(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.predict_logits(images).softmax(dim=1)

    def record(self) -> LabelRecord:
        """The network's labels, with the CLIP whose text embeddings it classifies with."""
        text = checkpoint_record(self.meta)
        network = TrainedNetwork(self.source or "in-memory", self.sha256 or "", self.meta["backbone"],
                                 int(self.meta["iteration"]), int(self.meta["short_side"]))
        return replace(text, classes=list(self.class_names), segmenter="maskclip+", network=network,
                       min_confidence=None, confidence_format="png")


def load_segmenter(path: str | Path, device: str | torch.device = "cpu") -> TrainedSegmenter:
    """The network saved in a ``maskclip train`` checkpoint, in eval mode on ``device``."""
    path = Path(path)
    state = load_checkpoint(path, "cpu")
    meta = state["meta"]
    model = DeepLabV2(meta["backbone"], meta["text"], meta["groups"], weights=NO_WEIGHTS)
    model.load_state_dict(state["model"])
    return TrainedSegmenter(model.to(device).eval(), meta, str(path.resolve()), file_sha256(path)[:16])
