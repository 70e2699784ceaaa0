"""Shared fixtures: tiny open_clip models built from config dicts (random weights, CPU, fast)."""

from __future__ import annotations

import os
from pathlib import Path

import huggingface_hub
import open_clip
import pytest
import timm
import torch

from maskclip_cli.clip.loading import LoadedCLIP, from_model

TEXT_CFG = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
TINY_CONFIGS = {
    "vit": {"embed_dim": 32, "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 48, "layers": 2, "head_width": 24}, "text_cfg": TEXT_CFG},
    "resnet": {"embed_dim": 32, "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8, "head_width": 16}, "text_cfg": TEXT_CFG},
}


def make_tiny_clip(kind: str = "vit", seed: int = 0) -> LoadedCLIP:
    torch.manual_seed(seed)
    model = open_clip.CLIP(**TINY_CONFIGS[kind])
    return from_model(model, f"tiny-{kind}")


@pytest.fixture(params=["vit", "resnet"])
def tiny_clip(request) -> LoadedCLIP:
    return make_tiny_clip(request.param)


@pytest.fixture
def tiny_vit() -> LoadedCLIP:
    return make_tiny_clip("vit")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny CPU models run far faster on one thread than on two oversubscribed ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Keep every test's text-embedding cache and HF cache out of the user's home."""
    monkeypatch.setenv("MASKCLIP_CACHE", str(tmp_path / "maskclip-cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def hf_home(monkeypatch) -> Path:
    """The conftest's HF_HOME (offline), also for huggingface_hub, which reads it once at import."""
    home = Path(os.environ["HF_HOME"])
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(home / "hub"))
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    return home


def hub_cache(hf_home: Path, name: str, weights: Path) -> None:
    """Put ``weights`` where huggingface_hub keeps timm's repo for ``name`` (its ``hf_hub_id``)."""
    repo_id = timm.models.get_pretrained_cfg(name).hf_hub_id
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    (repo / "snapshots" / revision).mkdir(parents=True)
    os.link(weights, repo / "snapshots" / revision / weights.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
