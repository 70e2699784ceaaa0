"""Where the committed tiny CLIP lives, and loading it through the ordinary checkpoint path."""

from __future__ import annotations

from pathlib import Path

from ..clip.loading import LoadedCLIP, load_clip
from ..core.hooks import SILENT, ProgressHook

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "synthetic"
MODEL_CONFIG = ASSETS / "maskclip-synthetic-vit.json"
CHECKPOINT = ASSETS / "maskclip-synthetic-vit.pt"


def load_synthetic_clip(
    checkpoint: str | Path = CHECKPOINT, device: str = "cpu", hook: ProgressHook = SILENT, quick_gelu: bool | None = None
) -> LoadedCLIP:
    """The tiny CLIP, loaded exactly as ``--model <config.json> --checkpoint <file>`` would."""
    return load_clip(str(MODEL_CONFIG), checkpoint=checkpoint, device=device, hook=hook, quick_gelu=quick_gelu)
