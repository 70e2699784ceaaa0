"""How an export names the labels' origin: one short model-version string (Label Studio's
``model_version``, the dataset card's title line) and the settings worth listing, from the
label folder's :class:`~maskclip_cli.core.record.LabelRecord`."""

from __future__ import annotations

from .._version import __version__
from ..core.record import LabelRecord
from ..core.shareable import shareable_record


def model_version(record: LabelRecord | None) -> str:
    """``maskclip-0.2.0 maskclip/<method> ViT-B-16@openai`` (what made the labels, in one token run)."""
    if record is None:
        return f"maskclip-{__version__}"
    record = shareable_record(record)
    method = record.inference.get("method")
    segmenter = record.segmenter + (f"/{method}" if method and record.segmenter == "maskclip" else "")
    clip = f" {record.clip.identity}" if record.clip else ""
    return f"maskclip-{__version__} {segmenter}{clip}"


def settings_lines(record: LabelRecord | None) -> list[str]:
    """``key: value`` lines of the record's settings (no file paths: the card is shared)."""
    if record is None:
        return []
    record = shareable_record(record)
    lines = [f"segmenter: {record.segmenter}"]
    if record.clip:
        lines.append(f"CLIP: {record.clip.model} (weights: {record.clip.weights.label})")
    if record.network:
        lines.append(f"network: {record.network.backbone}, iteration {record.network.iteration}, "
                     f"checkpoint sha256 {record.network.sha256[:16]}")
    lines += [f"{k}: {v}" for k, v in sorted(record.inference.items())]
    if record.synonyms:
        lines.append("synonyms: " + "; ".join(f"{k} = {', '.join(v)}" for k, v in sorted(record.synonyms.items())))
    if record.min_confidence is not None:
        lines.append(f"min_confidence: {record.min_confidence} (pixels below it are ignore, 255)")
    return lines
