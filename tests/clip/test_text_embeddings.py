"""Prompt-ensembled class text embeddings and their on-disk cache."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from conftest import make_tiny_clip

from maskclip_cli.clip.templates import get_templates
from maskclip_cli.clip.text_embeddings import (
    class_embeddings,
    default_cache_dir,
    encode_classes,
)
from maskclip_cli.core.errors import MaskCLIPError
from maskclip_cli.core.record import ClipSource, WeightsSource

TEMPLATES = ("a photo of a {}.", "a drawing of the {}.", "there is a {} in the scene.")


def cacheable(clip, label: str = "checkpoint:0123456789abcdef"):
    """The tiny model with a stable weights identity, as a checkpoint-loaded model would have."""
    weights = WeightsSource("checkpoint", sha256=label.split(":", 1)[1]) if ":" in label else WeightsSource.from_legacy(label)
    return dataclasses.replace(clip, source=ClipSource(clip.model_name, weights))


class CountingEncoder:
    """Wraps ``model.encode_text`` and counts the prompts it encodes."""

    def __init__(self, clip, monkeypatch):
        self.prompts = 0
        original = clip.model.encode_text

        def encode_text(tokens, *args, **kwargs):
            self.prompts += tokens.shape[0]
            return original(tokens, *args, **kwargs)

        monkeypatch.setattr(clip.model, "encode_text", encode_text)


def test_vild_set_has_85_templates():
    """The paper's set: 85 distinct templates (CLIP's 80 ImageNet + ViLD's 5), each with one slot."""
    templates = get_templates("vild")
    assert len(templates) == 85 == len(set(templates))
    assert all(t.count("{}") == 1 for t in templates)
    assert set(get_templates("imagenet")) < set(templates)
    with pytest.raises(MaskCLIPError):
        get_templates("no-such-set")


def test_embeddings_are_unit_norm_renormalised_template_means():
    """Each class = normalise(mean over templates of normalise(encode_text(template(name)))),
    computed by hand one prompt at a time; every row has unit norm."""
    clip = make_tiny_clip("vit")
    names = ["cat", "traffic light"]
    got = encode_classes(clip, names, TEMPLATES)
    assert got.shape == (2, 32)
    assert torch.allclose(got.norm(dim=-1), torch.ones(2), atol=1e-6)
    for row, name in zip(got, names):
        per_template = torch.stack(
            [F.normalize(clip.model.encode_text(clip.tokenizer([t.format(name)]))[0], dim=-1) for t in TEMPLATES]
        )
        want = F.normalize(per_template.mean(0), dim=-1)
        assert ((row - want).norm() / want.norm()) < 1e-5
        # the un-normalised plain mean differs in norm, so the check above can tell them apart
        assert abs(per_template.mean(0).norm() - 1) > 1e-3


def test_small_batches_give_the_same_embeddings():
    """Encoding the prompts in batches of 2 gives the same result as one batch."""
    clip = make_tiny_clip("vit")
    a = encode_classes(clip, ["dog"], TEMPLATES)
    b = encode_classes(clip, ["dog"], TEMPLATES, batch_size=2)
    assert torch.allclose(a, b, atol=1e-6)


def test_cache_hit_on_second_call(monkeypatch):
    """The first call encodes every prompt and writes a cache file under $MASKCLIP_CACHE; a second
    call with the same model, templates and classes encodes nothing and returns the same tensor."""
    clip = cacheable(make_tiny_clip("vit"))
    counter = CountingEncoder(clip, monkeypatch)
    first = class_embeddings(clip, ["cat", "dog"], TEMPLATES)
    assert counter.prompts == 2 * len(TEMPLATES)
    files = list((default_cache_dir() / "text").glob("*.pt"))
    assert len(files) == 1
    second = class_embeddings(clip, ["dog", "cat"], TEMPLATES)
    assert counter.prompts == 2 * len(TEMPLATES)
    assert torch.equal(second, first.flip(0))


def test_cache_encodes_only_new_classes(monkeypatch):
    """Adding a class to a cached set encodes only that class."""
    clip = cacheable(make_tiny_clip("vit"))
    class_embeddings(clip, ["cat"], TEMPLATES)
    counter = CountingEncoder(clip, monkeypatch)
    out = class_embeddings(clip, ["cat", "bird"], TEMPLATES)
    assert counter.prompts == len(TEMPLATES)
    assert torch.allclose(out[1], encode_classes(clip, ["bird"], TEMPLATES)[0], atol=1e-6)


def test_cache_is_keyed_by_templates_and_model(monkeypatch):
    """Other templates or other weights miss the cache (and get their own file)."""
    clip = cacheable(make_tiny_clip("vit"))
    class_embeddings(clip, ["cat"], TEMPLATES)
    counter = CountingEncoder(clip, monkeypatch)
    class_embeddings(clip, ["cat"], TEMPLATES[:2])
    assert counter.prompts == 2
    other = cacheable(clip, "checkpoint:fedcba9876543210")
    class_embeddings(other, ["cat"], TEMPLATES)
    assert counter.prompts == 2 + len(TEMPLATES)
    assert len(list((default_cache_dir() / "text").glob("*.pt"))) == 3


def test_in_memory_and_random_weights_are_not_cached(monkeypatch):
    """Models without a stable weights identity ("in-memory", "none") never read or write the cache."""
    for label in ("in-memory", "none"):
        clip = cacheable(make_tiny_clip("vit"), label)
        counter = CountingEncoder(clip, monkeypatch)
        class_embeddings(clip, ["cat"], TEMPLATES)
        class_embeddings(clip, ["cat"], TEMPLATES)
        assert counter.prompts == 2 * len(TEMPLATES)
    assert not (default_cache_dir() / "text").exists()


def test_corrupt_cache_file_is_rebuilt(tmp_path):
    """A corrupt cache file is ignored and rewritten, never fatal."""
    clip = cacheable(make_tiny_clip("vit"))
    want = class_embeddings(clip, ["cat"], TEMPLATES, cache_dir=tmp_path)
    (path,) = (tmp_path / "text").glob("*.pt")
    path.write_bytes(b"not a tensor file")
    got = class_embeddings(clip, ["cat"], TEMPLATES, cache_dir=tmp_path)
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.load(path, weights_only=True)["cat"].shape == (32,)


def test_unwritable_cache_warns_once_and_goes_on(tmp_path, monkeypatch):
    """MASKCLIP_CACHE under a file (not writable, even for root): embeddings are computed anyway,
    equal to uncached ones, with one warning for the folder however often it is used."""
    from maskclip_cli.clip import text_embeddings
    from maskclip_cli.clip.text_embeddings import class_embeddings, encode_classes
    from maskclip_cli.core.hooks import ProgressHook

    class Hook(ProgressHook):
        def __init__(self):
            self.warnings = []

        def warn(self, message):
            self.warnings.append(message)

    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("MASKCLIP_CACHE", str(tmp_path / "file" / "cache"))
    monkeypatch.setattr(text_embeddings, "_unwritable", set())
    clip = cacheable(make_tiny_clip("vit"))
    hook = Hook()
    first = class_embeddings(clip, ["cat", "dog"], ("a photo of a {}.",), hook=hook)
    second = class_embeddings(clip, ["cow"], ("a photo of a {}.",), hook=hook)
    assert torch.allclose(first, encode_classes(clip, ["cat", "dog"], ("a photo of a {}.",)))
    assert second.shape[0] == 1
    assert len(hook.warnings) == 1 and "MASKCLIP_CACHE" in hook.warnings[0]
