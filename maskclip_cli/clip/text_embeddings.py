"""Class names -> prompt-ensembled CLIP text embeddings, cached on disk.

Each name is put through every template, encoded, L2-normalised, averaged and renormalised
(ViLD's recipe, used by the paper). Embeddings are cached under the cache folder keyed by model
identity, activation (GELU or QuickGELU: caches of 0.1.0, which built OpenAI's CLIPs with GELU,
are never reused), template set and class name, so a second run with the same CLIP encodes nothing.
Models with no stable identity (random or in-memory weights) are not cached. A cache that cannot
be read or written (``MASKCLIP_CACHE`` or HOME read-only) is never fatal: it is reported once per
folder through the hook and the embeddings are computed without it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from ..core._io import atomic_write
from ..core.hooks import SILENT, ProgressHook
from .loading import RANDOM_WEIGHTS, LoadedCLIP

UNCACHEABLE = (RANDOM_WEIGHTS, "in-memory")
_unwritable: set[Path] = set()  # cache folders already reported in this process


def default_cache_dir() -> Path:
    root = os.environ.get("MASKCLIP_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "maskclip"
    )
    return Path(root)


def _cache_file(clip: LoadedCLIP, templates: tuple[str, ...], cache_dir: Path) -> Path:
    key = hashlib.sha256("\n".join((clip.identity, clip.activation, *templates)).encode()).hexdigest()[:24]
    return cache_dir / "text" / f"{key}.pt"


@torch.no_grad()
def encode_classes(clip: LoadedCLIP, names: list[str], templates: tuple[str, ...], batch_size: int = 256) -> torch.Tensor:
    """(len(names), D) unit-norm embeddings, no caching."""
    out = []
    device = clip.device
    for name in names:
        prompts = [t.format(name) for t in templates]
        embs = []
        for i in range(0, len(prompts), batch_size):
            tokens = clip.tokenizer(prompts[i : i + batch_size]).to(device)
            embs.append(clip.model.encode_text(tokens).float())
        e = torch.nn.functional.normalize(torch.cat(embs), dim=-1).mean(0)
        out.append(torch.nn.functional.normalize(e, dim=-1))
    return torch.stack(out).cpu()


def _read_cache(path: Path) -> dict[str, torch.Tensor]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else {}
    except Exception:  # corrupt or unreadable: rebuilt, never fatal
        return {}


def class_embeddings(
    clip: LoadedCLIP, names: list[str], templates: tuple[str, ...], cache_dir: Path | None = None,
    hook: ProgressHook = SILENT,
) -> torch.Tensor:
    """Like :func:`encode_classes`, reading and extending the on-disk cache when the model allows."""
    if clip.pretrained in UNCACHEABLE:
        return encode_classes(clip, names, templates)
    root = cache_dir or default_cache_dir()
    path = _cache_file(clip, templates, root)
    cache = _read_cache(path)
    missing = [n for n in dict.fromkeys(names) if n not in cache]
    if missing:
        cache.update(zip(missing, encode_classes(clip, missing, templates)))
        try:
            atomic_write(path, lambda tmp: torch.save(cache, tmp))
        except OSError as exc:
            if root not in _unwritable:
                _unwritable.add(root)
                hook.warn(f"Text-embedding cache {root} is not writable ({exc.strerror or exc}); going on without it. "
                          "Set MASKCLIP_CACHE to a writable folder to keep embeddings between runs.")
    return torch.stack([cache[n] for n in names])
