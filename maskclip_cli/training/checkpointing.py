"""Training checkpoints: written atomically, holding everything a resume or a reload needs.

A checkpoint holds the model, optimiser, LR scheduler and AMP scaler states, the iteration, the
RNG states (torch, numpy, python, CUDA), and the metadata that makes it self-describing: class
names, text embeddings and groups, the CLIP that produced them, the backbone and the input
normalisation, and the training configuration.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from ..core._io import atomic_write
from ..core.errors import MaskCLIPError
from ..core.record import LabelRecord

CHECKPOINT_FILE = "checkpoint.pt"
FORMAT = "maskclip+/1"


def rng_state() -> dict:
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, state: dict) -> None:
    """Write ``state`` (plus the format tag) to ``path`` through a temporary file and a rename."""
    atomic_write(path, lambda tmp: torch.save({"format": FORMAT, **state}, tmp))


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> dict:
    """A checkpoint written by :func:`save_checkpoint`; a MaskCLIPError for anything else.

    Not ``weights_only``: the RNG states hold numpy and python objects. Load only your own files.
    """
    if not path.is_file():
        raise MaskCLIPError(f"Checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:
        raise MaskCLIPError(f"Could not read checkpoint {path}: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise MaskCLIPError(f"{path} is not a `maskclip train` checkpoint.")
    return state


def checkpoint_record(meta: dict) -> LabelRecord:
    """The record of a checkpoint's text classifier (0.1.0 checkpoints kept a flat ``clip`` dict instead)."""
    return LabelRecord.from_dict(meta["record"] if "record" in meta else {**meta["clip"], "classes": meta["class_names"]})
