"""CLIP is built with the activation its weights were trained with (issue 9).

OpenAI's CLIPs use QuickGELU; open_clip records that per pretrained tag, but building the bare
architecture from a file path gives GELU. These tests place weights where a user's machine has
them (a Hugging Face cache, offline) and check every transformer block of both towers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import huggingface_hub
import open_clip
import pytest
import safetensors.torch
import torch
from conftest import TINY_CONFIGS
from open_clip.transformer import QuickGELU

from maskclip_cli.clip import loading
from maskclip_cli.clip.loading import file_sha256, load_clip
from maskclip_cli.clip.text_embeddings import class_embeddings
from maskclip_cli.engine.maskclip import MaskCLIP, MaskCLIPConfig
from maskclip_cli.core.hooks import ProgressHook
from maskclip_cli.core.record import LabelRecord


class RecordingHook(ProgressHook):
    def __init__(self):
        self.warnings: list[str] = []

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def block_activations(model: torch.nn.Module) -> list[type]:
    """The MLP activation of every transformer block, image tower (ViT) and text tower."""
    blocks = list(model.transformer.resblocks)
    if hasattr(model.visual, "transformer"):
        blocks += list(model.visual.transformer.resblocks)
    return [type(b.mlp.gelu) for b in blocks]


def hub_cache(hf_home: Path, hf_hub: str, weights: Path) -> Path:
    """Put ``weights`` where huggingface_hub keeps the repo of an open_clip ``hf_hub`` entry."""
    repo_id = hf_hub.rstrip("/")
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    os.link(weights, snapshot / open_clip.constants.HF_SAFE_WEIGHTS_NAME)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    return snapshot / open_clip.constants.HF_SAFE_WEIGHTS_NAME


@pytest.fixture(scope="module")
def vit_b16_weights(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """Random ViT-B-16 weights saved as open_clip saves them for the hub (safetensors; fp16 to keep
    the file small, exact in fp32)."""
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-16")
    state = {k: v.half().contiguous() for k, v in model.state_dict().items()}
    path = tmp_path_factory.mktemp("weights") / open_clip.constants.HF_SAFE_WEIGHTS_NAME
    safetensors.torch.save_file(state, str(path))
    return path, state


@pytest.fixture
def hf_home(tmp_path, monkeypatch) -> Path:
    """The conftest's HF_HOME, also for huggingface_hub (which reads it once, at import)."""
    home = Path(os.environ["HF_HOME"])
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(home / "hub"))
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    return home


def assert_weights(model: torch.nn.Module, saved: dict[str, torch.Tensor]) -> None:
    loaded = model.state_dict()
    assert loaded.keys() == saved.keys()
    assert all(torch.equal(loaded[k], saved[k].float()) for k in saved)


def test_openai_tag_from_the_hub_cache_builds_quickgelu_everywhere(vit_b16_weights, hf_home):
    """ViT-B-16 / openai from a warm, offline hub cache: QuickGELU in all 12 image and 12 text
    blocks, the saved weights, and the tag's activation recorded."""
    weights, saved = vit_b16_weights
    cfg = open_clip.get_pretrained_cfg("ViT-B-16", "openai")
    assert cfg["quick_gelu"] is True
    hub_cache(hf_home, cfg["hf_hub"], weights)
    clip = load_clip("ViT-B-16", "openai")
    acts = block_activations(clip.model)
    assert len(acts) == 24 and set(acts) == {QuickGELU}
    assert_weights(clip.model, saved)
    assert clip.quick_gelu and clip.activation == "quickgelu"
    assert (clip.mean, clip.std) == (tuple(cfg["mean"]), tuple(cfg["std"]))


def test_laion_tag_keeps_gelu(vit_b16_weights, hf_home):
    """A tag trained with GELU (LAION-2B) is built with GELU in every block."""
    weights, saved = vit_b16_weights
    cfg = open_clip.get_pretrained_cfg("ViT-B-16", "laion2b_s34b_b88k")
    assert not cfg.get("quick_gelu", False)
    hub_cache(hf_home, cfg["hf_hub"], weights)
    clip = load_clip("ViT-B-16", "laion2b_s34b_b88k")
    acts = block_activations(clip.model)
    assert len(acts) == 24 and set(acts) == {torch.nn.GELU}
    assert_weights(clip.model, saved)
    assert not clip.quick_gelu


def test_openai_tag_after_download_builds_quickgelu(vit_b16_weights, monkeypatch):
    """Weights fetched by open_clip's downloader (empty cache, hub reachable) get the tag's activation."""
    weights, saved = vit_b16_weights
    monkeypatch.setattr(loading, "reachable", lambda *a, **k: True)
    monkeypatch.setattr(open_clip, "download_pretrained", lambda cfg, cache_dir=None: str(weights))
    clip = load_clip("ViT-B-16", "openai")
    assert set(block_activations(clip.model)) == {QuickGELU}
    assert_weights(clip.model, saved)


# -- tag-level settings on a tiny architecture ---------------------------------------------------------


@pytest.fixture
def tiny_tagged(tmp_path, hf_home, monkeypatch) -> tuple[str, dict]:
    """A tiny architecture (model-config .json) with a made-up pretrained tag in open_clip's table,
    its weights in the hub cache."""
    name = "tiny-tagged-vit"
    config = tmp_path / f"{name}.json"
    config.write_text(json.dumps(TINY_CONFIGS["vit"]))
    cfg = open_clip.pretrained._pcfg(hf_hub="example/tiny-tagged/", quick_gelu=True, mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6))
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, name, {"tagged": cfg})
    torch.manual_seed(3)
    weights = tmp_path / "w.safetensors"
    safetensors.torch.save_file(open_clip.CLIP(**TINY_CONFIGS["vit"]).state_dict(), str(weights))
    hub_cache(hf_home, cfg["hf_hub"], weights)
    return str(config), cfg


def test_tag_mean_std_and_activation_apply_to_a_config_model(tiny_tagged):
    """Every tag-level setting open_clip records (activation, normalisation) reaches the model."""
    config, cfg = tiny_tagged
    clip = load_clip(config, "tagged")
    assert set(block_activations(clip.model)) == {QuickGELU}
    assert clip.mean == (0.1, 0.2, 0.3) and clip.std == (0.4, 0.5, 0.6)


def test_explicit_flag_overrides_the_tag_with_a_warning(tiny_tagged):
    config, _ = tiny_tagged
    hook = RecordingHook()
    clip = load_clip(config, "tagged", quick_gelu=False, hook=hook)
    assert set(block_activations(clip.model)) == {torch.nn.GELU}
    assert any("--no-quick-gelu" in w and "quick-gelu" in w for w in hook.warnings)


# -- checkpoint files ----------------------------------------------------------------------------------


@pytest.fixture
def tiny_config(tmp_path) -> str:
    path = tmp_path / "tiny-ckpt-vit.json"
    path.write_text(json.dumps(TINY_CONFIGS["vit"]))
    return str(path)


def _tiny(seed: int = 5) -> torch.nn.Module:
    torch.manual_seed(seed)
    return open_clip.CLIP(**TINY_CONFIGS["vit"], quick_gelu=True).eval()


def test_openai_torchscript_checkpoint_is_detected(tmp_path, tiny_config):
    """OpenAI publishes TorchScript archives: they load (open_clip's weights_only read refuses them)
    and are built with QuickGELU."""
    model = _tiny()
    path = tmp_path / "openai-style.pt"
    torch.jit.save(torch.jit.script(model), str(path))
    clip = load_clip(tiny_config, checkpoint=path)
    assert set(block_activations(clip.model)) == {QuickGELU}
    assert_weights(clip.model, model.state_dict())


def test_published_openai_file_is_recognised_by_its_sha256(tmp_path, tiny_config, monkeypatch):
    path = tmp_path / "ViT-B-16.pt"
    torch.save(_tiny().state_dict(), path)
    monkeypatch.setattr(loading, "_openai_sha256s", lambda: {file_sha256(path)})
    assert load_clip(tiny_config, checkpoint=path).quick_gelu


def test_checkpoint_inside_the_openai_hub_repo_is_quickgelu(tmp_path, tiny_config):
    """A file passed by path from the hub cache of an OpenAI tag keeps that tag's activation."""
    weights = tmp_path / "w.safetensors"
    safetensors.torch.save_file(_tiny().state_dict(), str(weights))
    path = hub_cache(tmp_path / "hf", open_clip.get_pretrained_cfg("RN50", "openai")["hf_hub"], weights)
    assert load_clip(tiny_config, checkpoint=path).quick_gelu


def test_unknown_checkpoint_follows_the_config_or_the_flag(tmp_path, tiny_config):
    """A plain state dict says nothing: the config decides (GELU here, no warning for a config the
    user wrote), and --quick-gelu / --no-quick-gelu choose."""
    path = tmp_path / "plain.pt"
    torch.save(_tiny().state_dict(), path)
    hook = RecordingHook()
    assert not load_clip(tiny_config, checkpoint=path, hook=hook).quick_gelu
    assert hook.warnings == []
    clip = load_clip(tiny_config, checkpoint=path, quick_gelu=True)
    assert set(block_activations(clip.model)) == {QuickGELU}


def test_unknown_checkpoint_for_a_builtin_name_warns(tmp_path):
    """RN50 + an undetectable checkpoint: built as open_clip's config says, with a warning naming the flags."""
    torch.manual_seed(0)
    path = tmp_path / "rn50.pt"
    torch.save(open_clip.create_model("RN50").state_dict(), path)
    hook = RecordingHook()
    clip = load_clip("RN50", checkpoint=path, hook=hook)
    assert not clip.quick_gelu
    assert len(hook.warnings) == 1 and "--quick-gelu" in hook.warnings[0]


# -- what the activation changes downstream -------------------------------------------------------------


def test_text_cache_is_keyed_by_activation(tmp_path, tiny_config):
    """Embeddings cached with GELU are not served to the QuickGELU build of the same weights."""
    path = tmp_path / "plain.pt"
    torch.save(_tiny().state_dict(), path)
    cache = tmp_path / "cache"
    gelu = load_clip(tiny_config, checkpoint=path, quick_gelu=False)
    quick = load_clip(tiny_config, checkpoint=path, quick_gelu=True)
    templates = ("a photo of a {}.",)
    e_gelu = class_embeddings(gelu, ["cat"], templates, cache)
    e_quick = class_embeddings(quick, ["cat"], templates, cache)
    assert len(list((cache / "text").iterdir())) == 2
    assert not torch.allclose(e_gelu, e_quick)


def test_label_settings_record_the_activation(tmp_path, tiny_config):
    path = tmp_path / "plain.pt"
    torch.save(_tiny().state_dict(), path)
    for flag in (True, False):
        mc = MaskCLIP(load_clip(tiny_config, checkpoint=path, quick_gelu=flag), ["cat", "dog"], MaskCLIPConfig(templates="simple"))
        record = mc.record()
        assert record.clip.quick_gelu is flag and record.to_dict()["clip"]["quick_gelu"] is flag
        assert LabelRecord.from_dict(record.to_dict()).clip.quick_gelu is flag


def test_a_0_1_0_record_has_no_activation_and_training_builds_as_trained():
    """0.1.0's flat settings say nothing about the activation: None, so train rebuilds the CLIP as its
    weights were trained instead of forcing GELU."""
    old = LabelRecord.from_dict({"model": "ViT-B-16", "weights": "openai", "classes": ["cat"], "templates": "vild"})
    assert old.clip.quick_gelu is None
