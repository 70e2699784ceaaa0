"""Online MaskCLIP+: the labeller's pseudo labels for a crop, checked against MaskCLIP run by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from maskclip_cli.engine.maskclip import MaskCLIP, MaskCLIPConfig
from maskclip_cli.core.errors import MaskCLIPError
from maskclip_cli.core.constants import IMAGENET_MEAN, IMAGENET_STD
from maskclip_cli.core.record import BackboneSource, LabelRecord, WeightsSource
from maskclip_cli.training.online_labeller import OnlineLabeller, labeller_config
from maskclip_cli.training.zero_shot import mask_unseen, merge_targets

from conftest import make_tiny_clip

IGN = 255
NAMES = ["grass", "cat", "dog", "cow", "sheep"]


def _crops(size: tuple[int, int], pad: int = 0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two random crops normalised with ImageNet's statistics, the last ``pad`` columns padding (0 / ignore)."""
    g = torch.Generator().manual_seed(seed)
    raw = torch.rand(2, 3, *size, generator=g)
    x = (raw - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
    valid = torch.zeros(2, *size, dtype=torch.long)
    if pad:
        x[..., -pad:] = 0.0
        valid[..., -pad:] = IGN
    return x, valid


def _by_hand(seg: MaskCLIP, x: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """What the labeller must give: renormalise to CLIP's stats, MaskCLIP's probabilities,
    bilinear upsampling to the crop, arg-max (an independent path through the formula)."""
    clip = seg.clip
    rgb = x * torch.tensor(IMAGENET_STD)[:, None, None] + torch.tensor(IMAGENET_MEAN)[:, None, None]
    x_clip = (rgb - torch.tensor(clip.mean)[:, None, None]) / torch.tensor(clip.std)[:, None, None]
    h, w = x.shape[-2:]
    if h % seg.patch or w % seg.patch:
        x_clip = F.interpolate(x_clip, size=(round(h / seg.patch) * seg.patch, round(w / seg.patch) * seg.patch), mode="bilinear", align_corners=False)
    probs = seg.scores(x_clip)
    up = F.interpolate(probs, size=size, mode="bilinear", align_corners=False)
    conf, idx = up.max(dim=1)
    return idx, conf


@pytest.mark.parametrize("kind", ["vit", "resnet"])
@pytest.mark.parametrize("size", [(64, 64), (60, 52)])
def test_online_labels_equal_maskclip_on_the_crop(kind, size):
    clip = make_tiny_clip(kind)
    cfg = MaskCLIPConfig(templates="simple", key_smoothing=kind == "vit", prompt_denoising=False)
    labeller = OnlineLabeller(clip, NAMES, cfg, IMAGENET_MEAN, IMAGENET_STD)
    x, valid = _crops(size, pad=8)
    labels, conf = labeller(x, valid)

    idx, want_conf = _by_hand(MaskCLIP(clip, NAMES, cfg), x, size)
    want = idx.masked_fill(valid == IGN, IGN)
    assert labels.shape == (2, *size) and labels.dtype == torch.long
    assert torch.equal(labels, want)
    assert len(labels.unique()) > 1  # random weights still give a non-trivial map
    torch.testing.assert_close(conf, want_conf.clamp(0, 1), rtol=1e-5, atol=1e-6)


def test_min_confidence_ignores_less_confident_pixels():
    clip = make_tiny_clip("vit")
    cfg = MaskCLIPConfig(templates="simple", key_smoothing=False, prompt_denoising=False)
    x, valid = _crops((32, 32))
    _, conf = OnlineLabeller(clip, NAMES, cfg, IMAGENET_MEAN, IMAGENET_STD)(x, valid)
    threshold = float(conf.median())
    labels, _ = OnlineLabeller(clip, NAMES, cfg, IMAGENET_MEAN, IMAGENET_STD)(x, valid, min_confidence=threshold)
    assert torch.equal(labels == IGN, conf < threshold)


def test_zero_shot_labeller_assigns_only_unseen_classes():
    """assign_label: the text embeddings are restricted to the unseen classes before anything else."""
    clip = make_tiny_clip("vit")
    cfg = MaskCLIPConfig(templates="simple", key_smoothing=False, prompt_denoising=False)
    unseen = ["dog", "sheep"]
    labeller = OnlineLabeller(clip, NAMES, cfg, IMAGENET_MEAN, IMAGENET_STD, candidates=unseen)
    x, valid = _crops((64, 64), pad=16)
    labels, _ = labeller(x, valid)

    idx, _ = _by_hand(MaskCLIP(clip, unseen, cfg), x, (64, 64))
    ids = torch.tensor([NAMES.index(u) for u in unseen])
    assert torch.equal(labels, ids[idx].masked_fill(valid == IGN, IGN))
    assert set(labels.unique().tolist()) == {2, 4, IGN}

    # merged with ground truth: seen GT untouched, unlabelled pixels only ever get unseen ids
    unseen_ids = ids
    gt = torch.randint(0, len(NAMES), (2, 64, 64), generator=torch.Generator().manual_seed(1))
    gt[:, :, :20] = IGN
    gt[valid == IGN] = IGN  # the crop's padding is ignore in every map
    gt = mask_unseen(gt, unseen_ids)
    target = merge_targets(gt, labels, unseen_ids)
    seen = gt != IGN
    assert torch.equal(target[seen], gt[seen])
    filled = (~seen) & (valid != IGN)
    assert torch.isin(target[filled], unseen_ids).all()
    assert (target[valid == IGN] == IGN).all()

    leaked = gt.clone()
    leaked[0, 0, 0] = 2
    with pytest.raises(MaskCLIPError, match="unseen"):
        merge_targets(leaked, labels, unseen_ids)


def test_background_words_and_config_from_settings():
    clip = make_tiny_clip("vit")
    settings = {"segmenter": "maskclip", "model": "tiny-vit", "templates": "simple", "background": ["sky", "wall"],
                "key_smoothing": False, "prompt_denoising": True, "denoise_threshold": 0.3, "short_side": 96,
                "window": 48, "stride": 24, "baseline": False, "classes": ["background", "cat", "dog"]}
    cfg = labeller_config(LabelRecord.from_dict(settings))
    assert (cfg.window, cfg.stride, cfg.denoise_threshold, cfg.background) == (None, None, 0.3, ["sky", "wall"])
    names = ["background", "cat", "dog"]
    labeller = OnlineLabeller(clip, names, cfg, IMAGENET_MEAN, IMAGENET_STD)
    assert labeller.segmenter.class_names == names and labeller.class_ids.tolist() == [0, 1, 2]
    zs = OnlineLabeller(clip, names, cfg, IMAGENET_MEAN, IMAGENET_STD, candidates=["dog", "background"])
    assert zs.segmenter.class_names == ["background", "dog"] and zs.class_ids.tolist() == [0, 2]
    with pytest.raises(MaskCLIPError, match="horse"):
        OnlineLabeller(clip, names, cfg, IMAGENET_MEAN, IMAGENET_STD, candidates=["horse"])


def test_restricted_labeller_equals_one_built_over_the_candidates():
    clip = make_tiny_clip("vit")
    cfg = MaskCLIPConfig(templates="simple", key_smoothing=False, prompt_denoising=True)
    full = OnlineLabeller(clip, NAMES, cfg, IMAGENET_MEAN, IMAGENET_STD)
    x, valid = _crops((32, 32))
    a, _ = full.restricted(["cow", "cat"])(x, valid)
    b, _ = OnlineLabeller(clip, NAMES, cfg, IMAGENET_MEAN, IMAGENET_STD, candidates=["cow", "cat"])(x, valid)
    assert torch.equal(a, b) and set(a.unique().tolist()) <= {1, 3}


def test_zero_shot_on_the_logit_path_is_assign_label():
    """With ``upsample_logits`` (key smoothing off) the labeller follows the authors' assign_label to the
    letter: cosines of the unit dense features with the unseen classes' text, bilinear to the crop, arg-max."""
    from maskclip_cli.clip.dense import dense_features

    clip = make_tiny_clip("vit")
    cfg = MaskCLIPConfig(templates="simple", key_smoothing=False, prompt_denoising=False, upsample_logits=True)
    unseen = ["cow", "cat", "sheep"]
    x, valid = _crops((64, 56), pad=8)
    labels, _ = OnlineLabeller(clip, NAMES, cfg, IMAGENET_MEAN, IMAGENET_STD).restricted(unseen)(x, valid)

    rgb = x * torch.tensor(IMAGENET_STD)[:, None, None] + torch.tensor(IMAGENET_MEAN)[:, None, None]
    x_clip = (rgb - torch.tensor(clip.mean)[:, None, None]) / torch.tensor(clip.std)[:, None, None]
    feats, _ = dense_features(clip.model.visual, x_clip)
    feats = feats / feats.norm(dim=1, keepdim=True)
    text = MaskCLIP(clip, unseen, cfg).text  # one prompt row per class here
    cosines = torch.einsum("nchw,lc->nlhw", feats, text)
    up = F.interpolate(cosines, size=(64, 56), mode="bilinear", align_corners=False)
    want = torch.tensor([NAMES.index(u) for u in unseen])[up.argmax(dim=1)].masked_fill(valid == IGN, IGN)
    assert torch.equal(labels, want) and len(labels.unique()) > 2


def test_labeller_stays_on_the_device_path(monkeypatch):
    """Crops are labelled through full_size (device tensors), never through the host-side predict."""
    labeller = OnlineLabeller(make_tiny_clip("vit"), NAMES, MaskCLIPConfig(templates="simple", pamr=True), IMAGENET_MEAN, IMAGENET_STD)
    x, valid = _crops((48, 40), pad=8)
    want = labeller(x, valid)
    monkeypatch.setattr(labeller.segmenter, "predict", lambda *a: pytest.fail("predict copies every crop to the host"))
    labels, conf = labeller(x, valid)
    assert torch.equal(labels, want[0]) and torch.equal(conf, want[1])


def test_online_labeller_with_a_proxy_from_the_record(monkeypatch):
    """train --online with --method proxyclip: the record's proxy (model, weights) is loaded again and
    named in the labeller's record; the crops are labelled on the proxy's grid, upsampled."""
    import timm

    create = timm.create_model
    monkeypatch.setattr(timm, "create_model", lambda name, *a, **k: create(name, *a, **{"depth": 1, **k}))
    record = LabelRecord(classes=NAMES, clip=None, inference=MaskCLIPConfig(method="proxyclip", templates="simple").inference_record())
    record.backbones = {"proxy": BackboneSource("vit_small_patch16_224.dino", WeightsSource("random"))}
    cfg = labeller_config(record)
    assert (cfg.method, cfg.proxy_model, cfg.proxy_pretrained, cfg.proxy_beta) == ("proxyclip", "vit_small_patch16_224.dino", "none", 1.2)
    labeller = OnlineLabeller(make_tiny_clip("vit"), NAMES, cfg, IMAGENET_MEAN, IMAGENET_STD)
    assert labeller.segmenter.cell == 16 and labeller.segmenter.patch == 16  # lcm of CLIP's 8 and the proxy's 16
    assert labeller.record().backbones == record.backbones
    x, valid = _crops((64, 48), pad=8)
    labels, conf = labeller(x, valid)
    assert labels.shape == (2, 64, 48) and (labels[valid == IGN] == IGN).all() and len(labels.unique()) > 2
