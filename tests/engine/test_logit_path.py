"""The successors' output path (logits upsampled, softmax over prompts after, synonyms compete),
PAMR inside the segmenter, and SCLIP's area threshold, against independent computations."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from conftest import make_tiny_clip

from maskclip_cli.clip.dense import dense_features
from maskclip_cli.engine.maskclip import MaskCLIP, MaskCLIPConfig, small_classes
from maskclip_cli.core.hooks import ProgressHook

CLASSES = [["cat", "kitten", "tabby"], "dog", ["tree", "bush"]]


def config(**kw) -> MaskCLIPConfig:
    base = dict(templates="simple", key_smoothing=False, prompt_denoising=False, upsample_logits=True, logit_scale=40.0)
    return MaskCLIPConfig(**{**base, **kw})


def prompt_logits_by_hand(mc: MaskCLIP, images: torch.Tensor, method: str, window: int | None = None, stride: int | None = None):
    """SCLIP's forward_feature / forward_slide: per-prompt cosines, each window upsampled to its pixels, averaged."""
    def feature(img):
        f, _ = dense_features(mc.clip.model.visual, img, method=method)
        f = f / f.norm(dim=1, keepdim=True)
        lg = torch.einsum("bdhw,rd->brhw", f, mc.text)
        return F.interpolate(lg, size=img.shape[-2:], mode="bilinear", align_corners=False)

    if window is None:
        f, _ = dense_features(mc.clip.model.visual, images, method=method)
        f = f / f.norm(dim=1, keepdim=True)
        return torch.einsum("bdhw,rd->brhw", f, mc.text)
    _, _, h, w = images.shape
    preds = torch.zeros(images.shape[0], mc.text.shape[0], h, w)
    count = torch.zeros(1, 1, h, w)
    for i in range(max(h - window + stride - 1, 0) // stride + 1):
        for j in range(max(w - window + stride - 1, 0) // stride + 1):
            y2, x2 = min(i * stride + window, h), min(j * stride + window, w)
            y1, x1 = max(y2 - window, 0), max(x2 - window, 0)
            preds[:, :, y1:y2, x1:x2] += feature(images[:, :, y1:y2, x1:x2])
            count[:, :, y1:y2, x1:x2] += 1
    return preds / count


def postprocess_by_hand(logits, size, scale, query_idx, n_cls):
    """Upsample, softmax over all prompts, class = max over its prompts, arg-max and top probability."""
    up = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)[0]
    p = (scale * up).softmax(0)
    onehot = F.one_hot(query_idx, n_cls).T.float()[:, :, None, None]
    cls = (p[None] * onehot).max(1)[0]
    return cls.argmax(0), cls.max(0)[0]


def test_whole_image_logit_path_matches_the_successors_postprocess():
    clip = make_tiny_clip("vit")
    mc = MaskCLIP(clip, CLASSES, config(method="naclip"))
    images = torch.randn(1, 3, 32, 48)
    pred = mc.predict(images, [(70, 45)])[0]
    labels, conf = postprocess_by_hand(prompt_logits_by_hand(mc, images, "naclip"), (45, 70), 40.0, mc.groups, 3)
    assert (torch.from_numpy(pred.labels) == labels).float().mean() > 0.999
    assert torch.allclose(torch.from_numpy(pred.confidence), conf, atol=1e-5)
    assert mc.class_names == ["cat", "dog", "tree"] and len(mc.text) == 6


def test_sliding_window_logits_are_averaged_per_pixel():
    clip = make_tiny_clip("vit")
    mc = MaskCLIP(clip, CLASSES, config(method="sclip", window=16, stride=8))
    images = torch.randn(1, 3, 32, 40)
    got = mc.prompt_logits(images)
    want = prompt_logits_by_hand(mc, images, "sclip", 16, 8)
    assert got.shape == want.shape == (1, 6, 32, 40)
    assert ((got - want).norm() / want.norm()) < 1e-5


def test_class_with_synonyms_scores_the_max_over_them():
    """Default path: a class's logit is its best word's; logit path: its best word's probability."""
    clip = make_tiny_clip("vit")
    images = torch.randn(1, 3, 32, 32)
    plain = MaskCLIP(clip, CLASSES, MaskCLIPConfig(templates="simple", key_smoothing=False, prompt_denoising=False))
    feats, keys = plain.encode(images)
    words = plain.prompt_cosines(feats)
    logits = plain.class_logits(feats)
    assert torch.equal(logits[:, 0], words[:, :3].amax(1)) and torch.equal(logits[:, 2], words[:, 4:].amax(1))
    sep = MaskCLIP(clip, ["cat", "kitten", "tabby", "dog"], MaskCLIPConfig(templates="simple", key_smoothing=False, prompt_denoising=False))
    assert torch.allclose(sep.class_logits(feats)[:, :3].amax(1), logits[:, 0])


def test_pamr_in_the_segmenter_refines_upsampled_logits():
    """As SCLIP/NACLIP: logits upsampled to the original size, PAMR guided by the input resized
    to that size, then the softmax over prompts."""
    from test_pamr import reference_pamr

    clip = make_tiny_clip("vit")
    mc = MaskCLIP(clip, CLASSES, config(method="clearclip", pamr=True, pamr_iterations=4, pamr_dilations=(1, 3)))
    images = torch.randn(1, 3, 32, 40)
    size = (37, 51)
    pred = mc.predict(images, [(size[1], size[0])])[0]
    up = F.interpolate(prompt_logits_by_hand(mc, images, "clearclip"), size=size, mode="bilinear", align_corners=False)
    guide = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
    refined = reference_pamr(guide, up, 4, (1, 3))
    labels, conf = postprocess_by_hand(refined, size, 40.0, mc.groups, 3)
    assert (torch.from_numpy(pred.labels) == labels).float().mean() > 0.999
    assert torch.allclose(torch.from_numpy(pred.confidence), conf, atol=1e-5)
    unrefined = MaskCLIP(clip, CLASSES, config(method="clearclip")).predict(images, [(size[1], size[0])])[0]
    assert not (unrefined.confidence == pred.confidence).all()


def test_area_threshold_in_the_segmenter():
    """Classes that cover little of the foreground fall back to the next best class (never background-only)."""
    clip = make_tiny_clip("vit")
    images = torch.randn(1, 3, 32, 48)
    names = ["dog", "cat", "tree", "car", "sky"]
    plain = MaskCLIP(clip, names, config(background=["wall"])).predict(images, [(48, 32)])[0]
    got = MaskCLIP(clip, names, config(background=["wall"], area_threshold=0.3)).predict(images, [(48, 32)])[0]
    fg = plain.labels[plain.labels > 0]
    small = [c for c in range(1, 6) if 0 < (fg == c).sum() <= 0.3 * fg.size]
    assert small, "the fixture should have a small class"
    assert not any((got.labels == c).any() for c in small)
    kept = ~torch.isin(torch.from_numpy(plain.labels), torch.tensor(small)).numpy()
    assert (got.labels[kept] == plain.labels[kept]).all()


def test_area_threshold_drops_small_foreground_classes():
    labels = torch.tensor([[0, 1, 1, 1], [2, 1, 1, 1], [0, 0, 3, 3], [1, 1, 1, 1]])
    drop = small_classes(labels, 5, 0.1)  # foreground: 10 px of 1, 1 px of 2, 2 px of 3, 0 of 4
    assert drop.tolist() == [False, False, True, False, True]


def test_pamr_out_of_memory_falls_back_with_a_warning(monkeypatch):
    import maskclip_cli.engine.maskclip as engine

    warnings = []

    class Hook(ProgressHook):
        def warn(self, message: str) -> None:
            warnings.append(message)

    def boom(*a, **k):
        raise RuntimeError("CUDA out of memory. Tried to allocate 40 GiB")

    clip = make_tiny_clip("vit")
    images = torch.randn(1, 3, 32, 32)
    plain = MaskCLIP(clip, CLASSES, config()).predict(images, [(50, 40)])[0]
    monkeypatch.setattr(engine, "pamr_affinity", boom)
    got = MaskCLIP(clip, CLASSES, config(pamr=True), hook=Hook()).predict(images, [(50, 40)])[0]
    assert (got.labels == plain.labels).all() and warnings and "PAMR skipped for a 50x40 image" in warnings[0]
