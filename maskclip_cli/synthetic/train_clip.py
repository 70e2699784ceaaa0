"""Training the tiny CLIP of the synthetic world: an open_clip CLIP, contrastive loss, fresh scenes.

Every step draws new scenes, so there is no dataset and no overfitting to a fixed set. The loss
is open_clip's :class:`ClipLoss` logits with one change: two scenes with the same set of
visible colours have interchangeable captions, so all such pairs are positives (soft targets)
instead of one being forced apart from the other. Without it the many empty scenes in a batch
would all be pushed away from each other's "background" captions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss

from ..core._io import atomic_write
from ..clip.loading import from_model, resolve_model_name
from ..clip.preprocess import to_model_input
from ..clip.templates import get_templates
from ..core.hooks import SILENT, ProgressHook
from .captions import caption, class_set_id
from .world import WorldSpec, make_scene


class SetClipLoss(ClipLoss):
    """Symmetric InfoNCE where pairs with equal class-set ids are all positives."""

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor, set_ids: torch.Tensor) -> torch.Tensor:
        per_image, per_text = self.get_logits(image_features, text_features, logit_scale)
        same = (set_ids[:, None] == set_ids[None, :]).float()
        target = same / same.sum(dim=1, keepdim=True)
        return (F.cross_entropy(per_image, target) + F.cross_entropy(per_text, target)) / 2


@dataclass(frozen=True)
class TrainSettings:
    """One training run. ``seed`` fixes the initial weights and the stream of training scenes.
    The defaults are the committed checkpoint's run (22 minutes on one CPU thread)."""

    steps: int = 1200
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: int = 80
    seed: int = 0
    templates: str = "vild"
    save_every: int = 100


def build_model(config: str | Path, seed: int) -> tuple[torch.nn.Module, object]:
    """A freshly initialised open_clip CLIP from a model-config JSON, and its tokenizer."""
    name = resolve_model_name(str(config))
    torch.manual_seed(seed)
    return open_clip.create_model(name, pretrained=None, device="cpu"), open_clip.get_tokenizer(name)


def scene_batch(seed: int, start: int, size: int, spec: WorldSpec, templates: tuple[str, ...],
                mean: tuple[float, ...], std: tuple[float, ...], patch: int) -> tuple[torch.Tensor, list[str], torch.Tensor]:
    """Images (B, 3, S, S), caption strings and class-set ids of scenes ``start .. start+size``."""
    images, captions, ids = [], [], []
    for index in range(start, start + size):
        scene = make_scene(seed, index, spec)
        rng = np.random.default_rng([seed, index, 1])
        images.append(to_model_input(scene.image, spec.size, patch, mean, std))
        captions.append(caption(scene.present, templates, rng))
        ids.append(class_set_id(scene.present))
    return torch.stack(images), captions, torch.tensor(ids)


def save_half(model: torch.nn.Module, path: Path) -> None:
    """Write an fp16 state dict atomically (half the size; loads into an fp32 model unchanged)."""
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def lr_at(step: int, s: TrainSettings) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < s.warmup:
        return s.lr * (step + 1) / s.warmup
    return 0.5 * s.lr * (1 + math.cos(math.pi * (step - s.warmup) / max(1, s.steps - s.warmup)))


def train_tiny_clip(config: str | Path, checkpoint: Path, settings: TrainSettings = TrainSettings(),
                    spec: WorldSpec = WorldSpec(), hook: ProgressHook = SILENT) -> torch.nn.Module:
    """Train from scratch, writing ``checkpoint`` every ``save_every`` steps and at the end."""
    model, tokenizer = build_model(config, settings.seed)
    templates = get_templates(settings.templates)
    norm = from_model(model)  # the mean/std that inference will normalise with
    model.train().requires_grad_(True)
    patch = model.visual.patch_size[0]
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay}, {"params": rest, "weight_decay": 0.0}],
                            lr=settings.lr, betas=(0.9, 0.98), eps=1e-6)
    loss_fn = SetClipLoss()
    hook.start(settings.steps, "training tiny CLIP")
    for step in range(settings.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, settings)
        images, captions, ids = scene_batch(settings.seed, step * settings.batch_size, settings.batch_size, spec,
                                            templates, norm.mean, norm.std, patch)
        image_features, text_features, logit_scale = model(images, tokenizer(captions))
        loss = loss_fn(image_features, text_features, logit_scale, ids)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        hook.advance(1, loss=loss.item(), lr=opt.param_groups[0]["lr"], scale=model.logit_scale.exp().item())
        if (step + 1) % settings.save_every == 0 or step + 1 == settings.steps:
            save_half(model, checkpoint)
    hook.finish()
    return model.eval().requires_grad_(False)
