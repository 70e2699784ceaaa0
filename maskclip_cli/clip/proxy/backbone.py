"""Loading a frozen timm backbone (DINO, DINOv2, SAM) the way a user's machine would.

Weights come from (a) timm's pretrained tag, read from the Hugging Face cache (the file timm's own
hub loader would fetch: ``<hf_hub_id>/model.safetensors`` or ``pytorch_model.bin``) and downloaded
only when the hub is reachable, (b) a local state-dict file (``--proxy-checkpoint``; safetensors or
a torch file read with ``weights_only``; timm's filter maps the authors' original DINO/SAM files),
or (c) nowhere (``pretrained=False``: random weights, for tests and speed). Every failure is a
one-line :class:`~maskclip_cli.core.errors.MaskCLIPError` raised before any image is read, as for
CLIP's weights in :mod:`maskclip_cli.clip.loading`.

ProxyCLIP (mc-lan/ProxyCLIP ``proxyclip_segmentor.py``) feeds the proxy the pixels CLIP sees,
re-normalised with ImageNet mean/std; here the mean/std come from the tag's timm config (ImageNet
for DINO, DINOv2 and SAM). The authors use the DINO/DINOv2 hub models' ``get_intermediate_layers``;
timm's ``forward_features`` gives the same tokens (last block, final norm) and resizes the
position embedding itself (``dynamic_img_size``), by size where DINO's code resizes by
``(grid + 0.1) / grid0``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from timm.models.vision_transformer import VisionTransformer
from timm.models.vision_transformer_sam import VisionTransformerSAM

from ...core._io import file_sha256
from ...core._network import reachable
from ...core.errors import CheckpointMismatchError, MaskCLIPError, WeightsUnavailableError
from ...core.record import WeightsSource
from ..methods import DEFAULT_PROXY, DEFAULT_SAM
_HUB_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass
class LoadedProxy:
    """A frozen timm backbone, its input normalisation and where its weights came from."""

    model: torch.nn.Module
    name: str  # timm name with its pretrained tag, e.g. vit_base_patch8_224.dino
    weights: WeightsSource  # recorded in outputs beside CLIP's
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def patch_size(self) -> int:
        return int(self.model.patch_embed.patch_size[0])

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """RGB pixels in [0, 1] (B, 3, H, W) -> the backbone's input."""
        mean = torch.tensor(self.mean, device=pixels.device, dtype=pixels.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=pixels.device, dtype=pixels.dtype).view(1, 3, 1, 1)
        return (pixels - mean) / std


def resolve_proxy_name(name: str, kind: type[torch.nn.Module] = VisionTransformer) -> str:
    """``name`` with its default tag added; refuses names timm does not know or that are not ``kind``."""
    flag = f"{_flag(kind)}-model"
    what = "a timm ViT (e.g. vit_base_patch8_224.dino, vit_base_patch14_reg4_dinov2.lvd142m)" if kind is VisionTransformer \
        else "a timm SAM ViT (e.g. samvit_base_patch16.sa1b)"
    if not timm.is_model(name):
        raise MaskCLIPError(f"Unknown {flag} '{name}': use {what}. `python -c \"import timm; print(timm.list_models('vit_*'))\"` lists them.")
    cls = timm.models.get_arch_name(name)
    if not timm.models.is_model_in_modules(cls, [kind.__module__.rsplit(".", 1)[1]]):
        why = "only plain ViTs can guide CLIP's last block" if kind is VisionTransformer else "Trident re-aggregates with SAM's encoder"
        raise MaskCLIPError(f"{flag} '{name}' is not {what}; {why}.")
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except RuntimeError:  # timm: "Invalid pretrained tag (x) for arch"
        tags = [t.split(".", 1)[1] for t in timm.list_pretrained(f"{cls}.*")] or ["none"]
        raise MaskCLIPError(f"{_flag(kind)}-pretrained / {flag}: {cls} has no timm tag '{name.split('.', 1)[1]}' "
                            f"(its tags: {', '.join(tags)}; 'none' = random weights).") from None
    return f"{cls}.{cfg.tag}" if cfg is not None and cfg.tag else cls


def _flag(kind: type[torch.nn.Module]) -> str:
    """The CLI options' prefix for this kind of backbone."""
    return "--proxy" if kind is VisionTransformer else "--sam"


def _hub_weights(name: str, cache_dir: str | None, flag: str) -> str:
    """Path of the tag's weights from the Hugging Face cache, else downloaded when the hub is reachable."""
    from huggingface_hub import hf_hub_download

    cfg = timm.models.get_pretrained_cfg(name)
    repo = (cfg.hf_hub_id or "") if cfg is not None else ""
    if not repo:
        raise MaskCLIPError(f"timm has no Hugging Face weights for '{name}'; pass {flag}-checkpoint PATH to a local state dict.")
    files = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else _HUB_FILES
    for filename in files:
        try:
            return hf_hub_download(repo, filename, cache_dir=cache_dir, local_files_only=True)
        except Exception:
            pass
    if not reachable("huggingface.co"):
        raise WeightsUnavailableError(
            f"Weights for {name} are not in the local cache and the hub cannot be reached. Download them once on a "
            f"connected machine (https://huggingface.co/{repo}) into the Hugging Face cache (HF_HOME), or pass "
            f"{flag}-checkpoint PATH to a local timm state dict."
        )
    try:
        return hf_hub_download(repo, files[0], cache_dir=cache_dir)
    except Exception as exc:  # network errors come in many types
        raise WeightsUnavailableError(f"Could not download weights for {name} from https://huggingface.co/{repo}: {exc}") from exc


def load_proxy(
    name: str = DEFAULT_PROXY, pretrained: bool = True, checkpoint: str | Path | None = None,
    device: str | torch.device = "cpu", cache_dir: str | None = None, kind: type[torch.nn.Module] = VisionTransformer,
) -> LoadedProxy:
    """Build the timm backbone ``name`` (``kind``: a ViT proxy, or ``VisionTransformerSAM`` for
    Trident's SAM) with weights from ``checkpoint``, else its tag's cache, else none
    (``pretrained=False``), frozen in eval mode."""
    full = resolve_proxy_name(name, kind)
    path: str | None = None
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        if not checkpoint.is_file():
            raise MaskCLIPError(f"{_flag(kind)}-checkpoint file not found: {checkpoint}")
        path = str(checkpoint)
        weights = WeightsSource("checkpoint", path=str(checkpoint.resolve()), sha256=file_sha256(checkpoint))
    elif pretrained:
        path = _hub_weights(full, cache_dir, _flag(kind))
        weights = WeightsSource("tag", tag=full.split(".", 1)[1] if "." in full else full)
    else:
        weights = WeightsSource("random")
    state = None
    if path is not None:
        try:  # safetensors, or torch's weights_only reader (never runs pickled code); unwraps {"state_dict"|"model": ...}
            state = timm.models.load_state_dict(path, use_ema=False)
        except Exception as exc:
            given = f"{_flag(kind)}-checkpoint" if checkpoint is not None else f"{_flag(kind)[2:]} weights"
            raise MaskCLIPError(f"Cannot read {given} {path}: {' '.join(str(exc).split())[:200]}. "
                                "Pass a timm state dict (.safetensors or .pth).") from exc
    # a ViT proxy without its classifier: only its patch tokens are used, so a checkpoint saved
    # without a head (DINO's own releases, num_classes=0) loads as well as one with it
    extra = {"dynamic_img_size": True, "num_classes": 0} if kind is VisionTransformer else {}
    try:  # timm's checkpoint filter maps the original DINO/SAM layouts; loading is strict
        model = timm.create_model(full, pretrained=state is not None, pretrained_cfg_overlay={"state_dict": state} if state else None, **extra)
    except (RuntimeError, KeyError, ValueError) as exc:
        given = f"{_flag(kind)}-checkpoint {path}" if checkpoint is not None else f"Weights {path}"
        raise CheckpointMismatchError(f"{given} does not fit {full}: {' '.join(str(exc).split())[:300]}... Check {_flag(kind)}-model.") from exc
    cfg = model.pretrained_cfg
    cfg.pop("state_dict", None)  # the config would otherwise keep a second copy of the weights alive
    return LoadedProxy(model.eval().requires_grad_(False).to(device), full, weights, tuple(cfg["mean"]), tuple(cfg["std"]))


def load_sam(name: str = DEFAULT_SAM, pretrained: bool = True, checkpoint: str | Path | None = None,
             device: str | torch.device = "cpu", cache_dir: str | None = None) -> LoadedProxy:
    """Trident's SAM image encoder (timm ``samvit_*``), loaded as :func:`load_proxy` loads a proxy."""
    return load_proxy(name, pretrained, checkpoint, device, cache_dir, kind=VisionTransformerSAM)


def patch_tokens(proxy: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The proxy's last-layer patch tokens after its final norm, (B, C, H/p, W/p): class and
    register tokens (``num_prefix_tokens``) dropped. ``images`` are normalised for the proxy, their
    sides multiples of its patch size (the authors pad crops to multiples of 56)."""
    p = proxy.patch_embed.patch_size
    if images.shape[-2] % p[0] or images.shape[-1] % p[1]:
        raise MaskCLIPError(f"Proxy input {tuple(images.shape[-2:])} is not a multiple of its patch size {p[0]}: pad it first.")
    tokens = proxy.forward_features(images)[:, proxy.num_prefix_tokens:]
    grid = proxy.patch_embed.dynamic_feat_size(images.shape[-2:])
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, *grid)
