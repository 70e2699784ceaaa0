"""The proxy backbone loads like CLIP (issue 18): timm's tag from a warm, offline Hugging Face cache,
a local state dict, or nothing; every failure one line that names the flag, before any image."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import safetensors.torch
import timm
import torch
from conftest import hub_cache

from maskclip_cli.clip.proxy.backbone import load_proxy, load_sam, patch_tokens
from maskclip_cli.core.errors import CheckpointMismatchError, MaskCLIPError, WeightsUnavailableError

DINO_S8 = "vit_small_patch8_224.dino"
DINOV2_S14 = "vit_small_patch14_reg4_dinov2.lvd142m"


def saved_state(name: str, path: Path) -> dict[str, torch.Tensor]:
    torch.manual_seed(3)
    state = {k: v.contiguous() for k, v in timm.create_model(name, pretrained=False).state_dict().items()}
    if path.suffix == ".safetensors":
        safetensors.torch.save_file(state, str(path))
    else:
        torch.save(state, path)
    return state


def assert_weights(model: torch.nn.Module, saved: dict[str, torch.Tensor]) -> None:
    loaded = model.state_dict()
    assert loaded.keys() == saved.keys() and all(torch.equal(loaded[k], saved[k]) for k in saved)


@pytest.mark.parametrize("name,filename", [(DINO_S8, "model.safetensors"), (DINOV2_S14, "pytorch_model.bin")])
def test_tag_from_the_offline_hub_cache(tmp_path, hf_home, name, filename):
    saved = saved_state(name, tmp_path / filename)
    hub_cache(hf_home, name, tmp_path / filename)
    proxy = load_proxy(name)
    assert_weights(proxy.model, saved)
    assert proxy.name == name and proxy.weights.kind == "tag" and proxy.weights.label == name.split(".")[1]
    assert (proxy.mean, proxy.std) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert not proxy.model.training and not any(p.requires_grad for p in proxy.model.parameters())
    tokens = patch_tokens(proxy.model, torch.randn(1, 3, 112, 168))
    assert tokens.shape == (1, 384, 112 // proxy.patch_size, 168 // proxy.patch_size)  # any size; class/register tokens gone


def test_missing_weights_offline_fail_fast_with_one_line(hf_home):
    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as info:
        load_proxy("vit_base_patch8_224.dino")
    message = str(info.value)
    assert time.monotonic() - start < 5 and "\n" not in message
    assert "vit_base_patch8_224.dino" in message and "--proxy-checkpoint" in message and "huggingface.co/timm/vit_base_patch8_224.dino" in message


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_state_dict(tmp_path, hf_home, suffix):
    """--proxy-checkpoint: no hub access at all; the file's sha256 is recorded."""
    path = tmp_path / f"dino{suffix}"
    saved = saved_state(DINO_S8, path)
    proxy = load_proxy(DINO_S8, checkpoint=path)
    assert_weights(proxy.model, saved)
    assert "state_dict" not in proxy.model.pretrained_cfg  # no second copy of the weights kept
    assert proxy.weights.kind == "checkpoint" and proxy.weights.path == str(path.resolve()) and len(proxy.weights.sha256) == 64


def test_weights_that_do_not_fit(tmp_path):
    path = tmp_path / "small.pth"
    saved_state(DINO_S8, path)
    with pytest.raises(CheckpointMismatchError) as info:
        load_proxy("vit_base_patch8_224.dino", checkpoint=path)
    assert "\n" not in str(info.value) and "--proxy-model" in str(info.value) and "--proxy-checkpoint" in str(info.value)


def test_unreadable_or_missing_file(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(MaskCLIPError, match="Cannot read --proxy-checkpoint") as info:
        load_proxy(DINO_S8, checkpoint=junk)
    assert "\n" not in str(info.value) and str(junk) in str(info.value)
    with pytest.raises(MaskCLIPError, match="not found"):
        load_proxy(DINO_S8, checkpoint=tmp_path / "absent.pth")


def test_headless_checkpoint_of_a_model_with_a_classifier(tmp_path):
    """A ViT saved without its classifier (num_classes=0, as DINO releases its weights) for a timm tag
    whose default has a 1000-class head was refused ("Missing key(s): head.weight"); the proxy uses
    only patch tokens, so with or without a head the backbone weights load."""
    name = "vit_tiny_patch16_224"
    for head in (0, 1000):
        torch.manual_seed(head)
        saved = timm.create_model(name, pretrained=False, num_classes=head).state_dict()
        torch.save(saved, tmp_path / "w.pth")
        loaded = load_proxy(name, checkpoint=tmp_path / "w.pth").model.state_dict()
        assert loaded.keys() == {k for k in saved if not k.startswith("head.")}
        assert all(torch.equal(loaded[k], saved[k]) for k in loaded)


@pytest.mark.parametrize("name,why", [("no_such_model", "Unknown --proxy-model"), ("resnet50.a1_in1k", "not a timm ViT"),
                                      ("samvit_base_patch16.sa1b", "not a timm ViT")])
def test_unknown_or_non_vit_proxy(name, why):
    with pytest.raises(MaskCLIPError, match=why) as info:
        load_proxy(name, pretrained=False)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("loader, name", [(load_proxy, "vit_small_patch8_224.bogus"), (load_sam, "samvit_base_patch16.bogus")])
def test_unknown_pretrained_tag(loader, name):
    """`--proxy-pretrained bogus` ended in timm's RuntimeError traceback (exit 1): one line naming
    the flags and the architecture's tags."""
    flag = "--proxy" if loader is load_proxy else "--sam"
    with pytest.raises(MaskCLIPError, match=f"{flag}-pretrained / {flag}-model: .* has no timm tag 'bogus'") as info:
        loader(name, pretrained=False)
    assert "\n" not in str(info.value) and ("dino" in str(info.value) or "sa1b" in str(info.value))


def test_sam_loader_takes_only_sam():
    with pytest.raises(MaskCLIPError, match="not a timm SAM ViT"):
        load_sam(DINO_S8, pretrained=False)


def test_random_weights_and_patch_multiple():
    proxy = load_proxy(DINO_S8, pretrained=False)
    assert proxy.weights.kind == "random" and proxy.patch_size == 8
    with pytest.raises(MaskCLIPError, match="multiple of its patch size 8"):
        patch_tokens(proxy.model, torch.randn(1, 3, 64, 60))
