"""Paths as a file meant to be shared (the HTML report, a COCO ``info``, a dataset card) may show
them: never an absolute path of the machine that made it. The label record keeps the checkpoint
and model-config paths resolved (to find them again); what is shared shows them relative to the
working directory when inside it, else by file name (issue 21/22)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .record import LabelRecord, WeightsSource

LOCAL_DIR = "local-dir:"


def shown(path: str | Path) -> str:
    """Relative as given, relative to the working directory when inside it, else the name alone."""
    path = Path(path)
    if not path.is_absolute():
        return path.as_posix()
    try:
        return path.relative_to(Path.cwd()).as_posix() or "."
    except ValueError:
        return path.name


def shown_model(model: str) -> str:
    """A CLIP model id with its folder (``local-dir:``) or config file (``.json``) path shown."""
    if model.startswith(LOCAL_DIR):
        return LOCAL_DIR + shown(model[len(LOCAL_DIR):])
    return shown(model) if model.endswith(".json") else model


def shareable_record(record: LabelRecord) -> LabelRecord:
    """A copy of ``record`` with every file path in it (CLIP's and the backbones' weights, a model
    config, the network's checkpoint) shown as :func:`shown` does."""
    clip = record.clip
    if clip is not None:
        clip = replace(clip, model=shown_model(clip.model), weights=_shown_weights(clip.weights))
    backbones = {k: replace(b, weights=_shown_weights(b.weights)) for k, b in record.backbones.items()}
    network = record.network and replace(record.network, checkpoint=shown(record.network.checkpoint))
    return replace(record, clip=clip, backbones=backbones, network=network)


def _shown_weights(weights: WeightsSource) -> WeightsSource:
    return replace(weights, path=shown(weights.path)) if weights.path else weights
