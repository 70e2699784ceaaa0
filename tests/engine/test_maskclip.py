"""The MaskCLIP segmenter end to end on tiny models: classes, background, refinement order, labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_tiny_clip
from PIL import Image

from maskclip_cli.engine.class_groups import reduce_groups
from maskclip_cli.clip.preprocess import snapped_size
from maskclip_cli.clip.templates import get_templates
from maskclip_cli.clip.text_embeddings import encode_classes
from maskclip_cli.core.constants import SOFTMAX_SCALE
from maskclip_cli.core.vocabulary import BACKGROUND, ClassVocabulary
from maskclip_cli.engine.maskclip import MaskCLIP, MaskCLIPConfig
from maskclip_cli.engine.prompt_denoising import prompt_denoise
from maskclip_cli.engine.sliding_window import slide
from maskclip_cli.core.errors import MaskCLIPError
from maskclip_cli.core.record import record_hash

CLASSES = ["cat", "dog", "tree", "car"]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def random_image(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


# -- classes ----------------------------------------------------------------------------------------


def test_segmenter_refuses_bad_classes():
    """MaskCLIP itself validates its classes, and reserves "background" when --background is used."""
    clip = make_tiny_clip("vit")
    with pytest.raises(MaskCLIPError):
        MaskCLIP(clip, [], MaskCLIPConfig(templates="simple"))
    with pytest.raises(MaskCLIPError, match="reserved"):
        MaskCLIP(clip, [BACKGROUND, "cat"], MaskCLIPConfig(templates="simple", background=["sky"]))


def test_a_vocabulary_and_the_same_plain_list_build_the_same_segmenter():
    """The CLI hands MaskCLIP a ClassVocabulary, Python users a list: same classes, text rows and record;
    a vocabulary whose background words are not the config's (which the record keeps) is refused."""
    clip = make_tiny_clip("vit")
    cfg = MaskCLIPConfig(templates="simple", background=["sky", " wall"])
    specs = ["cat", ["dog", "puppy"]]
    plain, vocab = MaskCLIP(clip, specs, cfg), MaskCLIP(clip, ClassVocabulary.build(specs, cfg.background), cfg)
    assert vocab.class_names == plain.class_names == [BACKGROUND, "cat", "dog"]
    assert torch.equal(vocab.text, plain.text) and torch.equal(vocab.groups, plain.groups)
    assert vocab.record() == plain.record() and vocab.groups.tolist() == [0, 0, 1, 2, 2]
    with pytest.raises(MaskCLIPError, match="background words differ"):
        MaskCLIP(clip, ClassVocabulary.build(specs, ["sky"]), cfg)


def test_reduce_groups_takes_the_max_per_group():
    """(B, R, h, w) prompt scores -> per-class max over that class's prompts; identity without groups."""
    scores = torch.randn(2, 5, 3, 4)
    groups = torch.tensor([0, 0, 0, 1, 2])
    out = reduce_groups(scores, groups, 3)
    assert torch.equal(out[:, 0], scores[:, :3].amax(dim=1))
    assert torch.equal(out[:, 1:], scores[:, 3:])
    assert reduce_groups(scores, torch.arange(5), 5) is scores


def test_merged_background_is_label_0_and_max_over_its_words():
    """--background words become one class with id 0 whose logit is the max of the words' cosines;
    a location whose best word is a background word is labelled 0."""
    clip = make_tiny_clip("vit")
    words = ["sky", "wall", "floor"]
    seg = MaskCLIP(clip, ["cat", "dog"], MaskCLIPConfig(templates="simple", background=words,
                                                        key_smoothing=False, prompt_denoising=False))
    assert seg.class_names == [BACKGROUND, "cat", "dog"]
    text = encode_classes(clip, words + ["cat", "dog"], get_templates("simple"))
    assert rel_err(seg.text, text) < 1e-6
    torch.manual_seed(0)
    feats = F.normalize(torch.randn(1, 32, 6, 7), dim=1)
    per_word = torch.einsum("bdhw,rd->brhw", feats, text)
    logits = seg.class_logits(feats)
    assert logits.shape == (1, 3, 6, 7)
    assert torch.allclose(logits[:, 0], per_word[:, :3].amax(dim=1), atol=1e-6)
    assert torch.allclose(logits[:, 1:], per_word[:, 3:], atol=1e-6)
    labels = seg.refine(feats, torch.randn(1, 48, 6, 7)).argmax(dim=1)
    is_bg = per_word.argmax(dim=1) < 3
    assert is_bg.any() and (~is_bg).any()
    assert torch.equal(labels == 0, is_bg)


def test_no_background_by_default():
    """Without --background the classes are exactly the user's, ids from 0."""
    seg = MaskCLIP(make_tiny_clip("vit"), CLASSES, MaskCLIPConfig(templates="simple"))
    assert seg.class_names == CLASSES and seg.text.shape == (4, 32)


# -- refinement order -------------------------------------------------------------------------------


def test_plain_scores_are_softmax_of_100_times_cosine():
    """With KS and PD off: probabilities = softmax(100 * cos(dense feature, class text))."""
    clip = make_tiny_clip("vit")
    seg = MaskCLIP(clip, CLASSES, MaskCLIPConfig(templates="simple", key_smoothing=False, prompt_denoising=False))
    images = torch.randn(1, 3, 32, 40)
    feats, keys = seg.encode(images)
    assert torch.allclose(feats.norm(dim=1), torch.ones(1, 4, 5), atol=1e-5)
    cos = F.cosine_similarity(feats[:, None], seg.text[None, :, :, None, None], dim=2)
    assert rel_err(seg.scores(images), (SOFTMAX_SCALE * cos).softmax(dim=1)) < 1e-5


def test_denoising_comes_before_smoothing():
    """With identity key similarity, KS+PD = softmax(100 * prompt_denoise(logits)): PD acts on the
    logits first and KS (a no-op here) on the result."""
    clip = make_tiny_clip("vit")
    seg = MaskCLIP(clip, CLASSES, MaskCLIPConfig(templates="simple", denoise_threshold=0.4))
    torch.manual_seed(1)
    # mostly "cat" and "dog" directions, so the other classes stay below the threshold and are removed
    mix = torch.rand(1, 1, 3, 4)
    feats = mix * seg.text[0, :, None, None] + (1 - mix) * seg.text[1, :, None, None]
    feats = F.normalize(feats + 0.05 * torch.randn(1, 32, 3, 4), dim=1)
    keys = torch.eye(48)[:12].T.reshape(1, 48, 3, 4)
    logits = seg.class_logits(feats)
    denoised = prompt_denoise(logits, 0.4)
    assert not torch.equal(denoised, logits)  # denoising does something here
    want = (SOFTMAX_SCALE * denoised).softmax(dim=1)
    assert rel_err(seg.refine(feats, keys), want) < 1e-5


# -- labelling PIL images ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind,cfg", [("resnet", {}), ("vit", {"short_side": 64}), ("vit", {"short_side": 64, "window": 32, "stride": 16})])
def test_label_image_odd_size(kind, cfg):
    """An odd-sized PIL image gives labels/confidence at the original size, ids within the class
    range, confidence in [0, 1], and per-class probabilities at feature resolution summing to 1.
    (The ResNet case runs at the default 512 short side.)"""
    seg = MaskCLIP(make_tiny_clip(kind), CLASSES, MaskCLIPConfig(templates="simple", **cfg))
    image = random_image(37, 23)
    pred = seg.label_image(image)
    assert pred.labels.shape == (23, 37) and pred.confidence.shape == (23, 37)
    assert pred.labels.dtype == np.int64 and pred.confidence.dtype == np.float32
    assert pred.labels.min() >= 0 and pred.labels.max() < len(CLASSES)
    assert pred.confidence.min() >= 0 and pred.confidence.max() <= 1
    w, h = snapped_size(37, 23, seg.config.short_side, seg.patch)
    assert pred.scores.shape == (len(CLASSES), h // seg.patch, w // seg.patch)
    assert torch.allclose(pred.scores.sum(dim=0), torch.ones(pred.scores.shape[1:]), atol=1e-4)


def test_label_image_labels_are_argmax_of_upsampled_scores():
    """Labels and confidence are the arg-max and max of the probabilities upsampled bilinearly."""
    seg = MaskCLIP(make_tiny_clip("vit"), CLASSES, MaskCLIPConfig(templates="simple", short_side=48))
    pred = seg.label_image(random_image(50, 31, seed=4))
    up = F.interpolate(pred.scores[None], size=(31, 50), mode="bilinear", align_corners=False)[0]
    assert np.array_equal(pred.labels, up.argmax(dim=0).numpy())
    assert np.allclose(pred.confidence, up.amax(dim=0).numpy(), atol=1e-6)


def test_snapped_size_is_a_stride_multiple_near_the_short_side():
    """Model input sizes are multiples of the stride with the short side near the request."""
    for width, height in [(37, 23), (640, 480), (333, 1000)]:
        w, h = snapped_size(width, height, 512, 16)
        assert w % 16 == 0 and h % 16 == 0
        assert abs(min(w, h) - 512) <= 8
        assert abs(w / h - width / height) < 0.05 * width / height


@pytest.mark.parametrize("method", ["sclip", "clearclip", "naclip"])
def test_method_features_feed_the_classifier(method):
    """MaskCLIPConfig(method=...) encodes with that method's dense features (whole image and windows)."""
    from maskclip_cli.clip.dense import dense_features

    clip = make_tiny_clip("vit")
    x = torch.randn(1, 3, 32, 48)
    mc = MaskCLIP(clip, CLASSES, MaskCLIPConfig(method=method, templates="simple"))
    feats, keys = dense_features(clip.model.visual, x, method=method)
    got_f, got_k = mc.encode(x)
    assert rel_err(got_f, F.normalize(feats, dim=1)) < 1e-6 and torch.allclose(got_k, keys)
    plain = MaskCLIP(clip, CLASSES, MaskCLIPConfig(templates="simple")).encode(x)[0]
    assert rel_err(got_f, plain) > 1e-3
    assert mc.record().inference["method"] == method


def test_token_count_is_bounded_for_extreme_aspect_ratios():
    """A 4000x10 strip is shrunk so its long side is MAX_ASPECT x the short side (at most ~4 (s/p)^2
    tokens) instead of being blown up to a 204800-px-long input; up to that ratio nothing changes."""
    from maskclip_cli.clip.preprocess import MAX_ASPECT

    assert snapped_size(4000, 10, 512, 16) == (MAX_ASPECT * 512, 16)
    assert snapped_size(10, 4000, 224, 16) == (16, MAX_ASPECT * 224)
    for width, height in [(640, 480), (2048, 512), (300, 1200), (37, 23)]:  # aspect <= 4: the short-side rule
        scale = 512 / min(width, height)
        want = tuple(max(16, round(v * scale / 16) * 16) for v in (width, height))
        assert snapped_size(width, height, 512, 16) == want
    assert snapped_size(4000, 10, 512, 16, max_long_side=1024) == (1024, 16)  # the protocols' own cap
    seg = MaskCLIP(make_tiny_clip("vit"), CLASSES, MaskCLIPConfig(templates="simple", short_side=32))
    x = seg.prepare(random_image(4000, 10))
    assert x.shape[1:] == (8, MAX_ASPECT * 32)
    pred = seg.label_image(random_image(4000, 10))
    assert pred.labels.shape == (10, 4000)


@pytest.mark.parametrize("config, digest", [
    (MaskCLIPConfig(), "4e5d1e3e52e62217"),
    (MaskCLIPConfig(method="naclip", pamr=True, window=64, background=["sky"]), "4365b24b64b58456"),
])
def test_record_hash_is_that_of_0_2_0(tiny_vit, config, digest):
    """New config fields left at None stay out of the record, so a 0.2.0 label folder resumes: the
    digests are what maskclip 0.2.0 wrote for these settings (same tiny CLIP, same classes)."""
    record = MaskCLIP(tiny_vit, ["cat", ["dog", "puppy"]], config).record()
    assert "max_long_side" not in record.inference
    assert record_hash(record) == digest


@pytest.mark.parametrize("cell, window, stride", [(1, 24, 8), (8, 32, 16), (8, 64, 64)])
def test_sliding_window_averages_overlaps_per_cell(cell, window, stride):
    """slide() puts every window's output back at its cells and divides by how many windows covered
    each: a position-independent map (average pooling) comes back as the whole image's map."""
    torch.manual_seed(0)
    images = torch.randn(2, 3, 48, 72)
    calls = []
    run = lambda crops: calls.append(crops.shape[0]) or F.avg_pool2d(crops, cell)  # noqa: E731
    out = slide(images, window, stride, run, cell, windows_per_pass=4)
    torch.testing.assert_close(out, F.avg_pool2d(images, cell))
    assert max(calls) <= 4 and sum(calls) % 2 == 0  # windows stacked per pass, both images each time


def test_proxyclip_windows_average_the_proxy_grid_per_cell():
    """With a sliding window, ProxyCLIP's features (on the proxy's finer grid) are averaged per
    proxy cell, as for the CLIP-only methods; the image is snapped to lcm(CLIP's, the proxy's patch)."""
    import timm

    from maskclip_cli.clip.proxy.backbone import LoadedProxy
    from maskclip_cli.clip.proxy.proxyclip import proxyclip_features
    from maskclip_cli.core.record import WeightsSource

    torch.manual_seed(0)
    dino = timm.create_model("vit_small_patch16_224.dino", pretrained=False, depth=1, dynamic_img_size=True).eval()
    proxy = LoadedProxy(dino, "vit_small_patch16_224.dino", WeightsSource("random"), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    clip = make_tiny_clip("vit")  # patch 8: CLIP's grid is finer than the proxy's here
    mc = MaskCLIP(clip, CLASSES, MaskCLIPConfig(method="proxyclip", templates="simple", window=32, stride=16), backbones={"proxy": proxy})
    assert (mc.patch, mc.cell) == (16, 16)
    x = torch.randn(1, 3, 32, 64)

    def by_hand(crops):
        pixels = crops * torch.tensor(clip.std).view(1, 3, 1, 1) + torch.tensor(clip.mean).view(1, 3, 1, 1)
        feats, keys = proxyclip_features(clip.model.visual, dino, crops, proxy.normalise(pixels))
        return torch.cat([F.normalize(feats, dim=1), keys], dim=1)

    want = slide(x, 32, 16, by_hand, 16)
    got_f, got_k = mc.encode(x)
    assert rel_err(got_f, want[:, : got_f.shape[1]]) < 1e-5 and rel_err(got_k, want[:, got_f.shape[1] :]) < 1e-5
    with pytest.raises(MaskCLIPError, match="backbones"):
        MaskCLIP(clip, CLASSES, MaskCLIPConfig(method="proxyclip", templates="simple"))
