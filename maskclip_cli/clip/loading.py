"""Loading a frozen open_clip model the way a user's machine would.

Weights come from (a) an open_clip pretrained tag, resolved through the Hugging Face cache and
downloaded only when the hub is reachable, (b) a local checkpoint file, or (c) nowhere
(``pretrained="none"``: random weights, for speed tests only). Every failure is turned into a
:class:`~maskclip_cli.core.errors.MaskCLIPError` that says what to do, before any work starts.

Every model is built as its weights were trained. A tag's settings in open_clip's pretrained table
(``quick_gelu``: OpenAI's CLIPs use ``x * sigmoid(1.702 x)`` in every transformer MLP; mean, std,
interpolation, resize mode) are applied to the architecture, whichever way the file was found.
open_clip itself only warns when a tag's ``quick_gelu`` disagrees with the architecture named.
For a checkpoint file the activation is read from the file where it can be told (OpenAI's
TorchScript archives, the published OpenAI files by SHA-256, files inside a Hugging Face cache
folder of a known tag), else the architecture's config decides; ``quick_gelu=True/False``
overrides all of this.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import open_clip
import torch
from open_clip.model import get_model_preprocess_cfg
from open_clip.pretrained import _PRETRAINED
from open_clip.transformer import QuickGELU

from ..core._io import file_sha256
from ..core._network import reachable
from ..core.constants import DEFAULT_MODEL, DEFAULT_PRETRAINED
from ..core.errors import CheckpointMismatchError, MaskCLIPError, WeightsUnavailableError
from ..core.hooks import SILENT, ProgressHook
from ..core.record import ClipSource, WeightsSource

RANDOM_WEIGHTS = "none"
_RANDOM_INIT_NOTICE = "No pretrained weights loaded"  # what open_clip logs when it builds without weights
_TAG_PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")


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
    def quick_gelu(self) -> bool:
        """Whether the transformer MLPs use QuickGELU (else GELU), as built."""
        return bool(self.source.quick_gelu)

    @property
    def activation(self) -> str:
        """``quickgelu`` or ``gelu``: part of the text-embedding cache key."""
        return "quickgelu" if self.quick_gelu else "gelu"

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


def _tag_cfg(model_name: str, tag: str) -> dict:
    """open_clip's record of a pretrained tag: where its weights live and how they were trained."""
    cfg = open_clip.get_pretrained_cfg(model_name, tag)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        raise MaskCLIPError(
            f"'{tag}' is not a pretrained tag of {model_name}. Known tags: {', '.join(tags) or 'none'}. "
            "Pass --checkpoint PATH for a local weights file."
        )
    return cfg


def _tag_weights_path(model_name: str, tag: str, cfg: dict, cache_dir: str | None) -> str:
    """Path of the weights for an open_clip tag: from the local cache, else downloaded."""
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
            "(HF_HOME), or pass --checkpoint PATH to a local open_clip weights file. "
            "To see maskclip work without any weights, run `maskclip demo`."
        )
    try:
        return open_clip.download_pretrained(cfg, cache_dir=cache_dir)
    except Exception as exc:  # network errors come in many types
        raise WeightsUnavailableError(
            f"Could not download weights for {model_name} (pretrained '{tag}') from {where}: {exc}. "
            "Pass --checkpoint PATH to a local open_clip weights file."
        ) from exc


def _is_torchscript(path: Path) -> bool:
    """OpenAI's released ``.pt`` files are TorchScript archives: zips holding ``constants.pkl``."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("/constants.pkl") for n in archive.namelist())


def _openai_sha256s() -> set[str]:
    """SHA-256 of OpenAI's published weight files: the folder name in their download URLs."""
    urls = (cfg.get("url", "") for tags in _PRETRAINED.values() for cfg in tags.values())
    return {u.split("/")[-2] for u in urls if "openaipublic" in u}


def _hub_cache_tag(path: Path) -> dict | None:
    """The pretrained cfg whose Hugging Face repo holds ``path``, when it lies in a hub cache
    (``.../models--ORG--NAME/snapshots/REV/FILE``); symlinks are not followed (they lead to blobs/)."""
    repo = next((p[len("models--"):].replace("--", "/") for p in path.absolute().parts if p.startswith("models--")), None)
    if repo is None:
        return None
    for tags in _PRETRAINED.values():
        for cfg in tags.values():
            hub = cfg.get("hf_hub", "")
            if hub and (hub.rstrip("/") if hub.endswith("/") else os.path.dirname(hub)) == repo:
                return cfg
    return None


def _checkpoint_quick_gelu(path: Path, sha256: str, torchscript: bool) -> tuple[bool | None, str]:
    """Whether the weights in ``path`` were trained with QuickGELU, and how that was told;
    ``None`` when the file does not say."""
    if torchscript:
        return True, "an OpenAI TorchScript archive"
    if sha256 in _openai_sha256s():
        return True, "a published OpenAI weights file"
    cfg = _hub_cache_tag(path)
    if cfg is not None:
        return bool(cfg.get("quick_gelu", False)), f"weights of the Hugging Face repo {cfg['hf_hub'].rstrip('/')}"
    return None, ""


def _torchscript_state(path: Path, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The tensors of a TorchScript archive (its code is never run), less the non-tensor attributes
    OpenAI's archives carry and the buffers the eager model does not save (e.g. ``attn_mask``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notes
        state = torch.jit.load(str(path), map_location="cpu").state_dict()
    unsaved = {n for n, _ in model.named_buffers()} - set(model.state_dict())
    return {k: v for k, v in state.items() if k not in unsaved and k not in ("input_resolution", "context_length", "vocab_size")}


def _load_checkpoint(model: torch.nn.Module, model_name: str, path: Path, torchscript: bool) -> None:
    try:
        if torchscript:  # open_clip reads with weights_only, which refuses TorchScript archives
            model.load_state_dict(_torchscript_state(path, model), strict=True)
        else:
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
    model: str = DEFAULT_MODEL,
    pretrained: str = DEFAULT_PRETRAINED,
    checkpoint: str | Path | None = None,
    device: str | torch.device = "cpu",
    cache_dir: str | None = None,
    hook: ProgressHook = SILENT,
    quick_gelu: bool | None = None,
) -> LoadedCLIP:
    """Build ``model`` and load its weights from ``checkpoint``, else from the ``pretrained`` tag.

    ``quick_gelu`` forces the activation; ``None`` builds the model as its weights were trained
    (see the module docstring). The model is returned in eval mode with gradients off: MaskCLIP
    never changes CLIP's weights.
    """
    name = resolve_model_name(model)
    weights_path: str | None = None
    preprocess: dict | None = None
    activation = quick_gelu
    torchscript = False
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        if not checkpoint.is_file():  # before the (slow) model build
            raise MaskCLIPError(f"Checkpoint file not found: {checkpoint}")
        sha = file_sha256(checkpoint)
        weights = WeightsSource("checkpoint", path=str(checkpoint.resolve()), sha256=sha)
        torchscript = _is_torchscript(checkpoint)
        detected, how = _checkpoint_quick_gelu(checkpoint, sha, torchscript)
        if activation is None:
            activation = detected
            if detected is None and not model.endswith(".json") and not name.startswith(("hf-hub:", "local-dir:")):
                hook.warn(
                    f"Cannot tell whether {checkpoint} was trained with QuickGELU (OpenAI's CLIPs and their "
                    f"fine-tunes) or GELU; building {name} as its config says. Pass --quick-gelu or "
                    "--no-quick-gelu to choose."
                )
        elif detected is not None and detected != activation:
            hook.warn(f"{_flag(activation)}: {checkpoint} is {how}, trained with {_flag(detected)[2:]}.")
    elif pretrained == RANDOM_WEIGHTS or name.startswith(("hf-hub:", "local-dir:")):
        weights = WeightsSource("random" if pretrained == RANDOM_WEIGHTS else "bundled")
        if pretrained == RANDOM_WEIGHTS:
            hook.warn(
                f"RANDOM WEIGHTS: {name} is built with --pretrained none. Its labels are meaningless; "
                "use this only to measure speed."
            )
    else:
        cfg = _tag_cfg(name, pretrained)
        trained = bool(cfg.get("quick_gelu", False))
        if activation is None:
            activation = trained
        elif activation != trained:
            hook.warn(f"{_flag(activation)}: the '{pretrained}' weights of {name} were trained with {_flag(trained)[2:]}.")
        preprocess = {k: cfg[k] for k in _TAG_PREPROCESS_KEYS if k in cfg}
        weights_path = _tag_weights_path(name, pretrained, cfg, cache_dir)
        weights = WeightsSource("tag", tag=pretrained)
    overrides = {} if activation is None else {"quick_gelu": activation}
    try:
        with _no_random_init_notice(checkpoint is not None):  # the checkpoint's weights follow
            clip = open_clip.create_model(name, pretrained=weights_path, device="cpu", force_preprocess_cfg=preprocess, **overrides)
    except RuntimeError as exc:
        raise CheckpointMismatchError(f"Could not load {name} weights from {weights_path}: {exc}") from exc
    if checkpoint is not None:
        _load_checkpoint(clip, name, checkpoint, torchscript)
    return _frozen(clip.to(device), open_clip.get_tokenizer(name), name, ClipSource(_model_ref(model), weights))


class _DropRandomInitNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_RANDOM_INIT_NOTICE)


@contextlib.contextmanager
def _no_random_init_notice(active: bool):
    """Silence open_clip's "Model initialized randomly" (logged on the root logger) while building a
    model whose weights are loaded right after from a checkpoint."""
    if not active:
        yield
        return
    notice, root = _DropRandomInitNotice(), logging.getLogger()
    root.addFilter(notice)
    try:
        yield
    finally:
        root.removeFilter(notice)


def _flag(quick_gelu: bool) -> str:
    return "--quick-gelu" if quick_gelu else "--no-quick-gelu"


def from_model(clip: torch.nn.Module, model_name: str = "custom", tokenizer: object | None = None) -> LoadedCLIP:
    """Wrap an already-built open_clip model (e.g. one made from a config dict in a script or test)."""
    source = ClipSource(model_name, WeightsSource("in-memory"))
    return _frozen(clip, tokenizer or open_clip.get_tokenizer(DEFAULT_MODEL), model_name, source)


def _frozen(clip: torch.nn.Module, tokenizer: object, model_name: str, source: ClipSource) -> LoadedCLIP:
    """``clip`` in eval mode without gradients, with the mean/std its preprocessing config gives and
    the activation it was built with recorded in its source."""
    clip = clip.eval().requires_grad_(False)
    source = replace(source, quick_gelu=any(isinstance(m, QuickGELU) for m in clip.modules()))
    cfg = get_model_preprocess_cfg(clip)
    return LoadedCLIP(
        model=clip,
        tokenizer=tokenizer,
        mean=tuple(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)),
        std=tuple(cfg.get("std", open_clip.OPENAI_DATASET_STD)),
        model_name=model_name,
        source=source,
    )
