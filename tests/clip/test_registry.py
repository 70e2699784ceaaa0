"""The method registry: one table the config, the CLI help, validation and the forward pass all read;
a method is resolved once, when the segmenter is built."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tiny_clip

import maskclip_cli.clip.dense as dense
import maskclip_cli.clip.methods as methods
from maskclip_cli.clip.dense import dense_features
from maskclip_cli.clip.methods import METHODS, REGISTRY, Method, get_method, methods_help
from maskclip_cli.core.errors import MaskCLIPError
from maskclip_cli.engine.config import MaskCLIPConfig
from maskclip_cli.engine.maskclip import MaskCLIP


def test_every_entry_resolves_to_its_recipe_and_rule():
    assert METHODS == tuple(REGISTRY) == ("maskclip", "sclip", "clearclip", "naclip", "proxyclip", "trident")
    for method in REGISTRY.values():
        module, function = method.recipe.split(":")
        recipe = method.encoder if method.needs else method.last_block  # a second backbone: a whole dense encoder
        assert recipe.__name__ == function and recipe.__module__.endswith(f"{'proxy' if method.needs else 'last_block'}.{module}")
    assert [m.name for m in REGISTRY.values() if not m.vit_only] == ["maskclip"]
    assert {m.name: m.needs for m in REGISTRY.values() if m.needs} == {"proxyclip": ("proxy",), "trident": ("proxy", "sam")}
    assert [m.name for m in REGISTRY.values() if m.whole_image] == ["trident"]
    assert {m.name: m.pos_embed_scale_offset for m in REGISTRY.values()} == {
        "maskclip": 0.0, "sclip": 0.1, "clearclip": 0.1, "naclip": 0.1, "proxyclip": 0.1, "trident": 0.1}
    assert get_method("naclip") is REGISTRY["naclip"] and get_method(REGISTRY["sclip"]) is REGISTRY["sclip"]
    with pytest.raises(MaskCLIPError, match="Unknown method 'nope'; choose one of maskclip, sclip"):
        get_method("nope")


def test_a_new_table_entry_is_all_a_method_needs(monkeypatch):
    """One more entry (here reusing ClearCLIP's recipe module) is accepted by the config, listed in the
    help, refused on a ResNet, and computes the same features as the recipe it names."""
    entry = Method("clearclip2", "clearclip:clearclip_block", "a test entry", pos_embed_scale_offset=0.1)
    monkeypatch.setattr(methods, "REGISTRY", {**REGISTRY, entry.name: entry})
    monkeypatch.setattr(methods, "METHODS", (*METHODS, entry.name))
    assert MaskCLIPConfig(method="clearclip2").method == "clearclip2"
    assert "clearclip2 (a test entry; ViT only)" in methods_help()
    clip = make_tiny_clip("vit")
    images = torch.randn(1, 3, 32, 48)
    assert torch.equal(dense_features(clip.model.visual, images, method="clearclip2")[0],
                       dense_features(clip.model.visual, images, method="clearclip")[0])
    with pytest.raises(MaskCLIPError, match="needs a ViT CLIP"):
        MaskCLIP(make_tiny_clip("resnet"), ["cat"], MaskCLIPConfig(method="clearclip2", templates="simple"))


def test_the_method_is_resolved_once_not_per_forward(monkeypatch):
    seg = MaskCLIP(make_tiny_clip("vit"), ["cat", "dog"], MaskCLIPConfig(method="naclip", templates="simple", window=32, stride=16))
    calls = []
    counting = lambda m: calls.append(m) or REGISTRY[m]  # noqa: E731
    monkeypatch.setattr(methods, "get_method", counting)
    monkeypatch.setattr(dense, "get_method", counting)
    seg.predict(torch.randn(2, 3, 48, 64), [(64, 48)] * 2)
    assert calls == []
