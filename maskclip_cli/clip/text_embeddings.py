"""Class names -> prompt-ensembled CLIP text embeddings, cached on disk.

Each name is put through every template, encoded, L2-normalised, averaged and renormalised
(ViLD's recipe, used by the paper). Embeddings are cached under the cache folder keyed by model
identity, activation (GELU or QuickGELU: caches of 0.1.0, which built OpenAI's CLIPs with GELU,
are never reused), template set and class name, so a second run with the same CLIP encodes nothing.
Models with no stable identity (random or in-memory weights) are not cached.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from .._io import atomic_write
from .loading import RANDOM_WEIGHTS, LoadedCLIP

UNCACHEABLE = (RANDOM_WEIGHTS, "in-memory")


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


def class_embeddings(
    clip: LoadedCLIP, names: list[str], templates: tuple[str, ...], cache_dir: Path | None = None
) -> torch.Tensor:
    """Like :func:`encode_classes`, reading and extending the on-disk cache when the model allows."""
    if clip.pretrained in UNCACHEABLE:
        return encode_classes(clip, names, templates)
    path = _cache_file(clip, templates, cache_dir or default_cache_dir())
    cache: dict[str, torch.Tensor] = {}
    if path.is_file():
        try:
            cache = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            cache = {}  # a corrupt cache is rebuilt, never fatal
    missing = [n for n in dict.fromkeys(names) if n not in cache]
    if missing:
        cache.update(zip(missing, encode_classes(clip, missing, templates)))
        atomic_write(path, lambda tmp: torch.save(cache, tmp))
    return torch.stack([cache[n] for n in names])
