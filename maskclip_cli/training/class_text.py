"""The frozen text classifier of MaskCLIP+: the same CLIP text embeddings that labelled the data.

Rebuilt from a label folder's :class:`~maskclip_cli.core.record.LabelRecord` (CLIP model, weights,
templates, background words), or from a user override, through
:class:`~maskclip_cli.engine.maskclip.MaskCLIP` itself, so the class order and the merged background
rows are exactly those of the labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..core._io import file_sha256
from ..clip.methods import DEFAULT_METHOD
from ..clip.loading import LoadedCLIP, load_clip
from ..clip.templates import get_templates
from ..clip.text_embeddings import class_embeddings
from ..core.constants import DEFAULT_PRETRAINED
from ..engine.maskclip import MaskCLIP, MaskCLIPConfig
from ..core.errors import MaskCLIPError
from ..core.hooks import SILENT, ProgressHook
from ..core.record import LabelRecord
from ..core.vocabulary import ClassVocabulary


@dataclass
class ClassText:
    """Class names by id, (R, D) unit-norm prompt embeddings, (R,) class id per row, and the
    record of the CLIP and text settings they came from (saved in checkpoints)."""

    class_names: list[str]
    text: torch.Tensor
    groups: torch.Tensor
    record: LabelRecord


def from_maskclip(mc: MaskCLIP) -> ClassText:
    return ClassText(list(mc.class_names), mc.text.cpu(), mc.groups.cpu(), mc.record())


def _weights_args(record: LabelRecord, pretrained: str | None, checkpoint: Path | None, hook: ProgressHook) -> tuple[str, Path | None]:
    """(pretrained tag, checkpoint file) that load the recorded weights, unless the user overrides them."""
    if checkpoint is not None or pretrained is not None:
        return pretrained or DEFAULT_PRETRAINED, checkpoint
    weights = record.clip.weights if record.clip else None
    if weights is None or weights.kind == "in-memory":
        raise MaskCLIPError("classes.json does not say which CLIP made the labels; pass --model with --pretrained or --checkpoint.")
    if weights.kind == "checkpoint":
        if not weights.path:
            raise MaskCLIPError("The labels were made with a CLIP checkpoint file that classes.json does not name; pass --checkpoint.")
        path = Path(weights.path)
        if not path.is_file():
            raise MaskCLIPError(f"The CLIP checkpoint that made the labels, {path}, is not there; pass --checkpoint.")
        if weights.sha256 and not file_sha256(path).startswith(weights.sha256):
            hook.warn(f"{path} has changed since it made the labels (sha256 differs); its text embeddings may differ.")
        return DEFAULT_PRETRAINED, path
    return {"tag": weights.tag, "random": "none"}.get(weights.kind) or DEFAULT_PRETRAINED, None


def _checked_method(record: LabelRecord, method: str | None) -> str:
    """The recorded dense-feature method; an error when ``method`` is given and differs."""
    recorded = record.inference.get("method", DEFAULT_METHOD)
    if method is not None and method != recorded:
        raise MaskCLIPError(f"--method {method} was asked for, but the labels were made with --method {recorded}.")
    return recorded


def load_labels_clip(
    record: LabelRecord, model: str | None = None, pretrained: str | None = None, checkpoint: Path | None = None,
    quick_gelu: bool | None = None, device: str | torch.device = "cpu", hook: ProgressHook = SILENT,
) -> LoadedCLIP:
    """The CLIP recorded in ``record`` (or the one given): the text classifier's, and online the labeller's.

    It is built with the activation recorded for the labels unless ``quick_gelu`` is given (records
    of 0.1.0 hold none: it is then built as its weights were trained)."""
    model = model or (record.clip.model if record.clip else None)
    if not model:
        raise MaskCLIPError("classes.json does not say which CLIP made the labels; pass --model with --pretrained or --checkpoint.")
    pretrained, checkpoint = _weights_args(record, pretrained, checkpoint, hook)
    if quick_gelu is None and record.clip is not None:
        quick_gelu = record.clip.quick_gelu
    return load_clip(model, pretrained, checkpoint, device, hook=hook, quick_gelu=quick_gelu)


def class_text_from_clip(clip: LoadedCLIP, record: LabelRecord, method: str | None = None, hook: ProgressHook = SILENT) -> ClassText:
    """Embed ``record``'s classes with ``clip``, with the recorded templates and background words.

    ``method``, when given, must be the dense-feature method recorded for the labels (a guard
    against training on labels other than the ones meant); it is kept in the classifier's record."""
    recorded = _checked_method(record, method)
    vocab = ClassVocabulary.from_record(record)  # the recorded class ids, background words and synonyms
    config = MaskCLIPConfig(method=recorded, templates=record.templates, background=record.background)
    # only the text is needed: no dense encoder, so a method's extra backbones (a proxy, SAM) are not loaded
    text = class_embeddings(clip, vocab.prompts, get_templates(config.templates), None, hook)
    kept = LabelRecord(classes=vocab.names, clip=clip.source, inference=config.inference_record(), synonyms=vocab.synonyms,
                       backbones=record.backbones)
    return ClassText(vocab.names, text.cpu(), torch.tensor(vocab.groups), kept)


def class_text_for_labels(
    record: LabelRecord, model: str | None = None, pretrained: str | None = None,
    checkpoint: Path | None = None, device: str | torch.device = "cpu", hook: ProgressHook = SILENT,
    method: str | None = None, quick_gelu: bool | None = None,
) -> ClassText:
    """Load the CLIP recorded in ``record`` (or the one given) and embed its classes (see
    :func:`load_labels_clip` for ``quick_gelu`` and :func:`class_text_from_clip` for ``method``)."""
    _checked_method(record, method)  # before the (slow) model load
    clip = load_labels_clip(record, model, pretrained, checkpoint, quick_gelu, device, hook)
    return class_text_from_clip(clip, record, method, hook)
