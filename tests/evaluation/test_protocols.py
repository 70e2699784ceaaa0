"""The paper and sclip protocols: per-dataset settings, user overrides and the rescale rule."""

from __future__ import annotations

import pytest
from PIL import Image

from maskclip_cli.clip.preprocess import fit_scale
from maskclip_cli.core.errors import MaskCLIPError
from maskclip_cli.engine.maskclip import MaskCLIP
from maskclip_cli.evaluation.protocols import eval_config, protocol_settings


def test_rescale_rule_matches_mmsegmentation_resize():
    assert fit_scale(500, 375, 520, 520) == pytest.approx(520 / 500)  # Context: fit the 520x520 box
    assert fit_scale(640, 480, 2048, 512) == pytest.approx(512 / 480)  # short side 512
    assert fit_scale(4000, 500, 2048, 512) == pytest.approx(2048 / 4000)  # very wide: long side capped


def test_protocol_settings_per_dataset():
    paper = protocol_settings("paper", "pascal-context")
    assert (paper.max_long, paper.max_short, paper.templates, paper.window) == (520, 520, "vild", None)
    assert protocol_settings("paper", "coco-stuff").max_short == 512
    sclip = protocol_settings("sclip", "voc-bg")
    assert (sclip.max_short, sclip.templates, sclip.window, sclip.stride, sclip.bg_threshold) == (336, "imagenet", 224, 112, 0.1)
    assert "sky" in sclip.background
    assert protocol_settings("sclip", "voc").bg_threshold == 0.0 and protocol_settings("sclip", "voc").background == ()
    assert protocol_settings("sclip", "coco-stuff").max_short == 448
    # SCLIP's configs: ADE20K 336, Cityscapes 560; logit scale 40 (65 VOC21, 50 Context 60); area threshold on VOC21 only
    assert protocol_settings("sclip", "ade20k").max_short == 336 and protocol_settings("sclip", "cityscapes").max_short == 560
    assert [protocol_settings("sclip", d).logit_scale for d in ("voc", "voc-bg", "pascal-context-60")] == [40, 65, 50]
    assert protocol_settings("sclip", "voc-bg").area_threshold == 0.1 and protocol_settings("sclip", "pascal-context-60").area_threshold is None
    exact = protocol_settings("paper-exact", "pascal-context")
    assert exact.authors_code and exact.upsample_logits and (exact.max_long, exact.max_short) == (520, 520)
    assert not paper.authors_code and not paper.upsample_logits and paper.logit_scale == 100
    with pytest.raises(MaskCLIPError, match="Unknown protocol"):
        protocol_settings("fast", "voc")


def test_user_overrides_beat_the_protocol():
    ps = protocol_settings("sclip", "pascal-context")
    cfg = eval_config(ps, key_smoothing=False)
    assert (cfg.templates, cfg.window, cfg.stride, cfg.short_side, cfg.key_smoothing) == ("imagenet", 224, 112, 336, False)
    cfg = eval_config(ps, templates="simple", window=0, short_side=200)
    assert (cfg.templates, cfg.window, cfg.stride, cfg.short_side) == ("simple", None, None, 200)
    with pytest.raises(MaskCLIPError, match="background class"):
        eval_config(ps, background=["sky"])


def test_rescaled_maskclip_input_size(tiny_vit):
    """The protocol's box rule is MaskCLIPConfig.max_long_side: prepare, resize (the label job's path),
    the record and predict all follow it; a user's short side turns it off."""
    ps = protocol_settings("paper", "pascal-context")
    seg = MaskCLIP(tiny_vit, ["cat", "dog"], eval_config(ps))
    assert seg.config.max_long_side == 520
    x = seg.prepare(Image.new("RGB", (500, 375)))
    assert x.shape[1:] == (392, 520)  # long side 520, short 390 snapped to the stride 8
    assert seg.resize(Image.new("RGB", (500, 375))).shape[1:] == (392, 520)
    assert seg.input_short_side() is None  # decoded in full: its short side is below short_side
    inference = seg.settings()["inference"]
    assert inference["max_long_side"] == 520 and inference["short_side"] is None
    assert inference["max_short_side"] == 520
    assert eval_config(ps, short_side=64).max_long_side is None
    pred = seg.label_image(Image.new("RGB", (40, 30)))
    assert pred.labels.shape == (30, 40)


def test_proxyclip_and_trident_protocols_are_the_authors_settings():
    """ProxyCLIP's configs: 336 crops stride 112 (224 on Cityscapes), short side 336 (448 ADE20K and
    Cityscapes), scale 40, prob_thd 0.2 VOC21 / 0.15 Context60; Trident's: 336/224 crops, short side
    448 VOC and COCO-Stuff, 576 Context and ADE20K (refine_neg_cos off on ADE20K), 688 Cityscapes."""
    proxy = {d: protocol_settings("proxyclip", d) for d in ("voc-bg", "pascal-context-60", "pascal-context", "ade20k", "cityscapes")}
    assert [(p.window, p.stride, p.max_short) for p in proxy.values()] == [(336, 112, 336)] * 3 + [(336, 112, 448), (224, 112, 448)]
    assert [p.bg_threshold for p in proxy.values()] == [0.2, 0.15, 0.0, 0.0, 0.0]
    assert {(p.method, p.logit_scale, p.key_smoothing, p.upsample_logits) for p in proxy.values()} == {("proxyclip", 40.0, False, True)}
    trident = {d: protocol_settings("trident", d) for d in ("voc-bg", "pascal-context", "coco-stuff", "ade20k", "cityscapes")}
    assert [p.max_short for p in trident.values()] == [448, 576, 448, 576, 688]
    assert [p.sam_refine_neg_cos for p in trident.values()] == [True, True, True, False, True]
    cfg = eval_config(trident["ade20k"])
    assert (cfg.method, cfg.window, cfg.stride, cfg.sam_refine_neg_cos, cfg.proxy_beta) == ("trident", 336, 224, False, 1.2)
    assert eval_config(trident["ade20k"], sam_refine_neg_cos=True).sam_refine_neg_cos is True
    assert eval_config(proxy["voc-bg"], method="naclip").method == "naclip"
