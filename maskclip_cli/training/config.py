"""The options of a MaskCLIP+ training run: one dataclass, the only place their defaults are
written (the CLI reads them from here), checked on construction. Plain values, no torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..core.errors import ParameterError, check_range

ANCHOR = 0.9  # self-training's default anchor (see training/self_training.py)
MIN_CROP = 32  # smallest training crop: 4x4 features at DeepLabv2's output stride 8


@dataclass
class TrainConfig:
    """Everything that shapes a run. Defaults follow the paper's annotation-free COCO-Stuff
    schedule (MMSegmentation's DeepLabv2 config): 8k iterations, batch 16, crop 512, SGD 0.01."""

    images: Path
    labels: Path | None  # the label folder; None only online with ``record``
    out: Path
    backbone: str = "resnet101"
    backbone_weights: str = "imagenet"
    iters: int = 8000
    self_train: bool = False
    guided_iters: int | None = None  # default: iters without self-training, iters // 10 with it
    self_train_threshold: float = 0.0
    # Below this confidence a self-training pixel keeps MaskCLIP's label (self_training.anchored; 0:
    # none, the paper's). Zero-shot, MaskCLIP's label over the unseen classes only.
    self_train_anchor: float = ANCHOR
    # Self-training labels come from an EMA of the network with this decay (a mean teacher; 0: from
    # the training pass itself, as the authors' code); see training/self_training.py.
    self_train_ema: float = 0.99
    # Per class, the most confident portion of its self-labelled pixels that become targets (CBST;
    # 1: all, as the authors' code; 0.2: CBST's first round); the rest keep MaskCLIP's label (with an anchor).
    self_train_portion: float = 0.2
    min_confidence: float = 0.0
    gt_labels: Path | None = None
    unseen: list[str] = field(default_factory=list)
    batch_size: int = 16  # in total over all GPUs
    crop_size: int = 512
    scale_min: float = 0.5
    scale_max: float = 2.0
    flip: bool = True
    photometric: bool = True
    lr: float = 0.01
    head_lr_mult: float = 1.0
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    amp: bool = True
    seed: int = 0
    workers: int = 4
    checkpoint_every: int = 1000
    log_every: int = 10
    val_images: Path | None = None
    val_labels: Path | None = None
    val_every: int = 1000
    clip_model: str | None = None  # the CLIP of the text classifier; default: the one in classes.json
    clip_pretrained: str | None = None  # its open_clip tag; default: from classes.json
    clip_checkpoint: Path | None = None  # its weights file; default: from classes.json
    clip_quick_gelu: bool | None = None  # its activation (QuickGELU or GELU); default: from classes.json
    method: str | None = None  # the dense-feature method the labels must have been made with (a guard)
    online: bool = False  # pseudo labels from a frozen CLIP labeller on every augmented crop
    record: dict | None = None  # online without a label folder: how to label (a LabelRecord.to_dict())

    def __post_init__(self) -> None:  # checked on construction, before any data or model is loaded
        for name in ("images", "labels", "out", "gt_labels", "val_images", "val_labels", "clip_checkpoint"):  # str or PathLike
            setattr(self, name, None if getattr(self, name) is None else Path(getattr(self, name)))
        for name, low in (("iters", 1), ("batch_size", 1), ("crop_size", MIN_CROP), ("workers", 0),
                          ("checkpoint_every", 1), ("log_every", 1), ("val_every", 1), ("seed", 0),
                          ("head_lr_mult", 0), ("weight_decay", 0), ("poly_power", 0)):
            check_range(name, getattr(self, name), low)
        check_range("guided_iters", self.guided_iters, 0)
        for name in ("self_train_threshold", "min_confidence", "self_train_anchor", "self_train_ema"):
            check_range(name, getattr(self, name), 0, 1)
        check_range("self_train_portion", self.self_train_portion, 0, 1, above=True)
        check_range("momentum", self.momentum, 0, 1)
        for name in ("lr", "scale_min"):
            check_range(name, getattr(self, name), 0, above=True)
        if self.scale_max < self.scale_min:
            raise ParameterError(f"{{}} ({self.scale_min}) must be <= {{}} ({self.scale_max}).", "scale_min", "scale_max")
        if self.guided_iters is not None and self.guided_iters > self.iters:
            raise ParameterError(f"{{}} ({self.guided_iters}) must be <= {{}} ({self.iters}).", "guided_iters", "iters")

    @property
    def guided(self) -> int:
        if self.guided_iters is not None:
            return self.guided_iters
        return self.iters // 10 if self.self_train else self.iters

    def as_json(self) -> dict:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}
