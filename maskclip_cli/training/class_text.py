"""The frozen text classifier of MaskCLIP+: the same CLIP text embeddings that labelled the data.

Rebuilt from a label folder's recorded settings (CLIP model, weights, templates, background
words), or from a user override, through :class:`~maskclip_cli.engine.maskclip.MaskCLIP` itself, so the
class order and the merged background rows are exactly those of the labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import MaskCLIPError
from ..hooks import SILENT, ProgressHook
from ..clip.last_block import DEFAULT_METHOD
from ..engine.maskclip import BACKGROUND, MaskCLIP, MaskCLIPConfig


@dataclass
class ClassText:
    """Class names by id, (R, D) unit-norm prompt embeddings, (R,) class id per row, and the
    CLIP settings they came from (recorded in checkpoints)."""

    class_names: list[str]
    text: torch.Tensor
    groups: torch.Tensor
    clip: dict


def from_maskclip(mc: MaskCLIP) -> ClassText:
    s = mc.settings()
    clip = {"model": s["model"], "weights": s["weights"], "templates": s["templates"], "background": s["background"],
            "method": s["method"]}
    return ClassText(list(mc.class_names), mc.text.cpu(), mc.groups.cpu(), clip)


def clip_settings(label_settings: dict) -> dict:
    """The CLIP part of a classes.json ``settings``; labels made by a trained model nest it."""
    return label_settings.get("clip", label_settings) if label_settings.get("segmenter") == "maskclip+" else label_settings


def class_text_for_labels(
    class_names: list[str], label_settings: dict, model: str | None = None, pretrained: str | None = None,
    checkpoint: Path | None = None, device: str | torch.device = "cpu", hook: ProgressHook = SILENT,
    method: str | None = None,
) -> ClassText:
    """Load the CLIP recorded in ``label_settings`` (or the one given) and embed ``class_names``.

    ``method``, when given, must be the dense-feature method recorded for the labels (a guard
    against training on labels other than the ones meant); it is kept in the classifier's record."""
    from ..clip.loading import load_clip

    s = clip_settings(label_settings)
    recorded = s.get("method", DEFAULT_METHOD)
    if method is not None and method != recorded:
        raise MaskCLIPError(f"--method {method} was asked for, but the labels were made with --method {recorded}.")
    model = model or s.get("model")
    weights = s.get("weights", "")
    if checkpoint is None and pretrained is None and str(weights).startswith("checkpoint:"):
        if not s.get("checkpoint"):
            raise MaskCLIPError("The labels were made with a CLIP checkpoint file that classes.json does not name; pass --checkpoint.")
        checkpoint = Path(s["checkpoint"])
    pretrained = pretrained or (weights if weights and not str(weights).startswith("checkpoint:") else "openai")
    if not model or (pretrained == "in-memory" and checkpoint is None):
        raise MaskCLIPError("classes.json does not say which CLIP made the labels; pass --model with --pretrained or --checkpoint.")
    background = list(s.get("background") or [])
    fg = class_names[1:] if background and class_names[:1] == [BACKGROUND] else class_names
    clip = load_clip(model, pretrained, checkpoint, device, hook=hook)
    mc = MaskCLIP(clip, fg, MaskCLIPConfig(method=recorded, templates=s.get("templates", "vild"), background=background))
    if mc.class_names != class_names:
        raise MaskCLIPError(f"Rebuilt classes {mc.class_names} differ from classes.json {class_names}.")
    text = from_maskclip(mc)
    text.clip["checkpoint"] = str(checkpoint) if checkpoint else None
    return text
