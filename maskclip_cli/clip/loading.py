"""Loading a frozen open_clip model the way a user's machine would.

Weights come from (a) an open_clip pretrained tag, resolved through the Hugging Face cache and
downloaded only when the hub is reachable, (b) a local checkpoint file, or (c) nowhere
(``pretrained="none"``: random weights, for speed tests only). Every failure is turned into a
:class:`~maskclip_cli.errors.MaskCLIPError` that says what to do, before any work starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch
from open_clip.model import get_model_preprocess_cfg

from .._io import file_sha256
from .._network import reachable
from ..errors import CheckpointMismatchError, MaskCLIPError, WeightsUnavailableError
from ..hooks import SILENT, ProgressHook
from ..record import ClipSource, WeightsSource

RANDOM_WEIGHTS = "none"


@dataclass
class LoadedCLIP:
    """A frozen CLIP model with what the pipeline needs to use it."""

    model: torch.nn.Module
    tokenizer: object
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    model_name: str  # the open_clip architecture name (a model-config file's stem)
    source: ClipSource  # what was asked for: enough to load the same CLIP again (recorded in outputs)

    @property
    def pretrained(self) -> str:
        """Short weights label: the tag, "none", "in-memory" or "checkpoint:<sha256 prefix>"."""
        return self.source.weights.label

    @property
    def identity(self) -> str:
        """Stable id of architecture + weights, used to key caches."""
        return f"{self.model_name}@{self.pretrained}"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def resolve_model_name(model: str) -> str:
    """Accept a built-in open_clip name, ``hf-hub:``/``local-dir:`` ids, or a model-config .json file."""
    if model.endswith(".json"):
        path = Path(model)
        if not path.is_file():
            raise MaskCLIPError(f"Model config file not found: {model}")
        open_clip.add_model_config(path)
        return path.stem
    if model.startswith(("hf-hub:", "local-dir:")):
        return model
    if model not in open_clip.list_models():
        raise MaskCLIPError(
            f"Unknown model '{model}'. Use an open_clip architecture name (e.g. ViT-B-16, RN50), "
            "a model-config .json file, or hf-hub:/local-dir: ids. `python -c \"import open_clip; "
            "print(open_clip.list_models())\"` lists the names."
        )
    return model


def _model_ref(model: str) -> str:
    """How the record names the architecture: a config file by absolute path, so it reloads anywhere."""
    return str(Path(model).resolve()) if model.endswith(".json") else model


def _tag_weights_path(model_name: str, tag: str, cache_dir: str | None) -> str:
    """Path of the weights for an open_clip tag: from the local cache, else downloaded."""
    cfg = open_clip.get_pretrained_cfg(model_name, tag)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        raise MaskCLIPError(
            f"'{tag}' is not a pretrained tag of {model_name}. Known tags: {', '.join(tags) or 'none'}. "
            "Pass --checkpoint PATH for a local weights file."
        )
    hub = cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import hf_hub_download

        repo_id, filename = os.path.split(hub.rstrip("/")) if not hub.endswith("/") else (hub.rstrip("/"), "")
        filenames = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        for name in filenames:
            try:
                return hf_hub_download(repo_id, name, cache_dir=cache_dir, local_files_only=True)
            except Exception:
                pass
        where = f"https://huggingface.co/{repo_id}"
    else:
        where = cfg.get("url", "")
    if not reachable("huggingface.co"):
        raise WeightsUnavailableError(
            f"Weights for {model_name} (pretrained '{tag}') are not in the local cache and the hub cannot "
            f"be reached. Download them once on a connected machine ({where}) into the Hugging Face cache "
            "(HF_HOME), or pass --checkpoint PATH to a local open_clip weights file."
        )
    try:
        return open_clip.download_pretrained(cfg, cache_dir=cache_dir)
    except Exception as exc:  # network errors come in many types
        raise WeightsUnavailableError(
            f"Could not download weights for {model_name} (pretrained '{tag}') from {where}: {exc}. "
            "Pass --checkpoint PATH to a local open_clip weights file."
        ) from exc


def _load_checkpoint(model: torch.nn.Module, model_name: str, path: Path) -> None:
    try:
        open_clip.load_checkpoint(model, str(path), strict=True, weights_only=True)
        return
    except RuntimeError as exc:
        raise CheckpointMismatchError(
            f"Checkpoint {path} does not match model {model_name}: {' '.join(str(exc).split())[:500]} "
            "Check --model against the architecture the checkpoint was trained with."
        ) from exc
    except Exception:
        pass  # a whole pickled model rather than a state dict (or not a checkpoint): handled below
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise MaskCLIPError(
            f"Cannot read checkpoint {path}: {exc} Pass an open_clip state dict or a whole saved model file."
        ) from exc
    state = obj.state_dict() if isinstance(obj, torch.nn.Module) else obj
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise CheckpointMismatchError(f"Checkpoint {path} does not match model {model_name}: {exc}") from exc


def load_clip(
    model: str = "ViT-B-16",
    pretrained: str = "openai",
    checkpoint: str | Path | None = None,
    device: str | torch.device = "cpu",
    cache_dir: str | None = None,
    hook: ProgressHook = SILENT,
) -> LoadedCLIP:
    """Build ``model`` and load its weights from ``checkpoint``, else from the ``pretrained`` tag.

    The model is returned in eval mode with gradients off: MaskCLIP never changes CLIP's weights.
    """
    name = resolve_model_name(model)
    weights_path: str | None = None
    if checkpoint is not None:
        if not Path(checkpoint).is_file():  # before the (slow) model build
            raise MaskCLIPError(f"Checkpoint file not found: {checkpoint}")
        weights = WeightsSource("checkpoint", path=str(Path(checkpoint).resolve()), sha256=file_sha256(checkpoint))
    elif pretrained == RANDOM_WEIGHTS or name.startswith(("hf-hub:", "local-dir:")):
        weights = WeightsSource("random" if pretrained == RANDOM_WEIGHTS else "bundled")
        if pretrained == RANDOM_WEIGHTS:
            hook.warn(
                f"RANDOM WEIGHTS: {name} is built with --pretrained none. Its labels are meaningless; "
                "use this only to measure speed."
            )
    else:
        weights_path = _tag_weights_path(name, pretrained, cache_dir)
        weights = WeightsSource("tag", tag=pretrained)
    try:
        clip = open_clip.create_model(name, pretrained=weights_path, device="cpu")
    except RuntimeError as exc:
        raise CheckpointMismatchError(f"Could not load {name} weights from {weights_path}: {exc}") from exc
    if checkpoint is not None:
        _load_checkpoint(clip, name, Path(checkpoint))
    return _frozen(clip.to(device), open_clip.get_tokenizer(name), name, ClipSource(_model_ref(model), weights))


def from_model(clip: torch.nn.Module, model_name: str = "custom", tokenizer: object | None = None) -> LoadedCLIP:
    """Wrap an already-built open_clip model (e.g. one made from a config dict in a script or test)."""
    source = ClipSource(model_name, WeightsSource("in-memory"))
    return _frozen(clip, tokenizer or open_clip.get_tokenizer("ViT-B-16"), model_name, source)


def _frozen(clip: torch.nn.Module, tokenizer: object, model_name: str, source: ClipSource) -> LoadedCLIP:
    """``clip`` in eval mode without gradients, with the mean/std its preprocessing config gives."""
    clip = clip.eval().requires_grad_(False)
    cfg = get_model_preprocess_cfg(clip)
    return LoadedCLIP(
        model=clip,
        tokenizer=tokenizer,
        mean=tuple(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)),
        std=tuple(cfg.get("std", open_clip.OPENAI_DATASET_STD)),
        model_name=model_name,
        source=source,
    )
