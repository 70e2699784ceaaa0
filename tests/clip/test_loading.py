"""Loading CLIP weights: tags offline, local checkpoints, random weights, clear errors."""

from __future__ import annotations

import json
import logging
import time

import open_clip
import pytest
import torch
from conftest import TINY_CONFIGS

from maskclip_cli.core._io import file_sha256
from maskclip_cli.clip.loading import from_model, load_clip
from maskclip_cli.core.errors import (
    CheckpointMismatchError,
    MaskCLIPError,
    WeightsUnavailableError,
)
from maskclip_cli.core.hooks import ProgressHook


class RecordingHook(ProgressHook):
    def __init__(self):
        self.warnings: list[str] = []

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def config_file(tmp_path, kind: str = "vit", name: str | None = None, **vision) -> str:
    """A model-config .json for a tiny architecture (``vision`` overrides vision_cfg entries)."""
    cfg = json.loads(json.dumps(TINY_CONFIGS[kind]))
    cfg["vision_cfg"].update(vision)
    path = tmp_path / f"{name or 'tiny-' + kind + '-test'}.json"
    path.write_text(json.dumps(cfg))
    return str(path)


def tiny_model(kind: str = "vit", seed: int = 7, **vision) -> torch.nn.Module:
    torch.manual_seed(seed)
    cfg = json.loads(json.dumps(TINY_CONFIGS[kind]))
    cfg["vision_cfg"].update(vision)
    return open_clip.CLIP(**cfg)


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


# -- pretrained tags --------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["RN50", "ViT-B-16"])
def test_offline_tag_without_cache_fails_fast_with_a_clear_message(model):
    """HF_HUB_OFFLINE=1 and an empty HF_HOME (conftest): WeightsUnavailableError within seconds,
    naming the model and tag and pointing at --checkpoint."""
    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as info:
        load_clip(model, "openai")
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert model in message and "'openai'" in message and "--checkpoint" in message
    assert "\n" not in message


def test_unreachable_hub_without_offline_flag_fails_the_same_way(monkeypatch):
    """Without HF_HUB_OFFLINE, a hub that cannot be reached gives the same error (no download attempt)."""
    monkeypatch.delenv("HF_HUB_OFFLINE")

    def no_network(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr("maskclip_cli.core._network.socket.create_connection", no_network)
    monkeypatch.setattr(open_clip, "download_pretrained", lambda *a, **k: pytest.fail("tried to download"))
    with pytest.raises(WeightsUnavailableError, match="RN50"):
        load_clip("RN50", "openai")


def test_unknown_tag_lists_the_known_tags():
    """An unknown tag raises MaskCLIPError naming the model and listing its real tags."""
    with pytest.raises(MaskCLIPError) as info:
        load_clip("RN50", "no-such-tag")
    assert not isinstance(info.value, WeightsUnavailableError)
    message = str(info.value)
    assert "no-such-tag" in message and "RN50" in message
    for tag in open_clip.list_pretrained_tags_by_model("RN50"):
        assert tag in message


def test_unknown_model_and_missing_config_file():
    """Unknown architecture names and missing config files are MaskCLIPErrors, not tracebacks."""
    with pytest.raises(MaskCLIPError, match="Unknown model 'ViT-Q-99'"):
        load_clip("ViT-Q-99", "openai")
    with pytest.raises(MaskCLIPError, match="not found"):
        load_clip("/nonexistent/tiny.json", "none")


# -- random weights ---------------------------------------------------------------------------------


def test_random_weights_warn_through_the_hook(tmp_path):
    """pretrained="none" builds the architecture, warns loudly through the hook, and is frozen."""
    hook = RecordingHook()
    clip = load_clip(config_file(tmp_path), "none", hook=hook)
    assert len(hook.warnings) == 1
    assert "RANDOM WEIGHTS" in hook.warnings[0] and "tiny-vit-test" in hook.warnings[0]
    assert clip.pretrained == "none" and clip.identity == "tiny-vit-test@none"
    assert not clip.model.training
    assert not any(p.requires_grad for p in clip.model.parameters())


def test_pretrained_tag_does_not_warn(tmp_path):
    """A checkpoint load gives no random-weights warning (the warning is specific to "none")."""
    path = tmp_path / "w.pt"
    torch.save(tiny_model().state_dict(), path)
    hook = RecordingHook()
    load_clip(config_file(tmp_path), checkpoint=path, hook=hook)
    assert hook.warnings == []


# -- checkpoints ------------------------------------------------------------------------------------


def test_state_dict_checkpoint_round_trip(tmp_path):
    """A saved state dict loads back bit for bit; the weights label is the file's sha256 prefix."""
    model = tiny_model()
    path = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), path)
    clip = load_clip(config_file(tmp_path), checkpoint=str(path))
    assert_same_weights(clip.model, model)
    assert clip.pretrained == f"checkpoint:{file_sha256(path)[:16]}"
    assert not clip.model.training


def test_checkpoint_load_does_not_log_random_initialisation(tmp_path, caplog):
    """open_clip's "Model initialized randomly" is not logged when a checkpoint's weights follow
    (it still is for --pretrained none, where it is true)."""
    path = tmp_path / "tiny.pt"
    torch.save(tiny_model().state_dict(), path)
    with caplog.at_level(logging.WARNING):
        load_clip(config_file(tmp_path), checkpoint=str(path))
    assert not [r for r in caplog.records if "initialized randomly" in r.getMessage()]
    with caplog.at_level(logging.WARNING):
        load_clip(config_file(tmp_path), "none")
    assert [r for r in caplog.records if "initialized randomly" in r.getMessage()]


def test_whole_pickled_model_file_loads(tmp_path):
    """A whole model saved with torch.save(model) loads too, with equal weights."""
    model = tiny_model(seed=3)
    path = tmp_path / "whole.pt"
    torch.save(model, path)
    clip = load_clip(config_file(tmp_path), checkpoint=path)
    assert_same_weights(clip.model, model)


def test_checkpoint_of_another_architecture_is_a_mismatch(tmp_path):
    """A ResNet checkpoint for a ViT config: CheckpointMismatchError naming file and model, with the
    offending keys and a hint about --model."""
    path = tmp_path / "rn.pt"
    torch.save(tiny_model("resnet").state_dict(), path)
    with pytest.raises(CheckpointMismatchError) as info:
        load_clip(config_file(tmp_path), checkpoint=path)
    message = str(info.value)
    assert "rn.pt" in message and "tiny-vit-test" in message and "--model" in message
    assert "Missing key" in message and "visual." in message


def test_checkpoint_with_other_shapes_is_a_mismatch(tmp_path):
    """Same architecture family, different width: the size mismatch is reported."""
    path = tmp_path / "wide.pt"
    torch.save(tiny_model(width=64, head_width=32).state_dict(), path)
    with pytest.raises(CheckpointMismatchError, match="size mismatch"):
        load_clip(config_file(tmp_path), checkpoint=path)


def test_missing_checkpoint_file(tmp_path):
    """A checkpoint path that does not exist is a MaskCLIPError naming the path."""
    with pytest.raises(MaskCLIPError, match="not found"):
        load_clip(config_file(tmp_path), checkpoint=tmp_path / "nope.pt")


@pytest.mark.parametrize("content", [b"\xdb\x01 random bytes \x00" * 10, b"just some text\n"], ids=["binary", "text"])
def test_unreadable_checkpoint_is_a_clear_error(tmp_path, content):
    """A file that is no checkpoint at all gives MaskCLIPError (not an unpickling traceback)."""
    path = tmp_path / "junk.pt"
    path.write_bytes(content)
    with pytest.raises(MaskCLIPError, match="junk.pt"):
        load_clip(config_file(tmp_path), checkpoint=path)


def test_from_model_freezes_and_labels_in_memory():
    """from_model puts the model in eval mode without gradients; its weights are "in-memory"."""
    clip = from_model(tiny_model().train(), "mine")
    assert not clip.model.training
    assert not any(p.requires_grad for p in clip.model.parameters())
    assert clip.identity == "mine@in-memory"
    assert clip.device == torch.device("cpu")
