"""Self-training (issue 19): labels from the training pass, the annotation-free anchor, zero-shot
restriction, and exact resume across the switch, offline and online."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from maskclip_cli.core.constants import IMAGENET_MEAN, IMAGENET_STD
from maskclip_cli.engine.maskclip import MaskCLIP, MaskCLIPConfig
from maskclip_cli.training import loop
from maskclip_cli.training.class_text import from_maskclip
from maskclip_cli.training.config import ANCHOR
from maskclip_cli.training.online_labeller import OnlineLabeller
from maskclip_cli.training.self_training import self_labels

from conftest import make_tiny_clip
from test_train import CLASSES, InterruptAt, config, make_dataset

IGN = 255
LABELLER_CFG = MaskCLIPConfig(templates="simple", key_smoothing=False, prompt_denoising=False)


@pytest.fixture(scope="module")
def maskclip() -> MaskCLIP:
    return MaskCLIP(make_tiny_clip("vit"), CLASSES, LABELLER_CFG)


def test_self_labels_are_the_argmax_of_the_upsampled_logits():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 4, 6) * 3
    labels, conf = self_labels(logits, (32, 48), None)
    up = F.interpolate(logits, size=(32, 48), mode="bilinear", align_corners=False)
    p = torch.exp(up - up.logsumexp(dim=1, keepdim=True))
    assert torch.equal(labels, up.argmax(dim=1))
    assert torch.allclose(conf, p.max(dim=1).values, rtol=1e-5)
    unseen = torch.tensor([1, 3])
    labels, conf = self_labels(logits, (32, 48), unseen)
    sub = up[:, unseen]
    assert torch.equal(labels, unseen[sub.argmax(dim=1)])  # class ids of classes.json, not of the subset
    assert torch.allclose(conf, sub.softmax(dim=1).max(dim=1).values, rtol=1e-5)


def _record(monkeypatch) -> list[dict]:
    """What each step merged: the pseudo labels it was given, the network's own labels, the target."""
    seen, merge, own = [], loop.merge_targets, loop.self_labels

    def recording_own(logits, size, unseen):
        labels, conf = own(logits, size, unseen)
        seen.append({"own": labels.clone(), "conf": conf.clone()})
        return labels, conf

    def recording_merge(gt, pseudo, unseen):
        target = merge(gt, pseudo, unseen)
        if seen and "target" not in seen[-1]:
            seen[-1].update(labels=pseudo.clone(), target=target.clone())
        return target

    monkeypatch.setattr(loop, "self_labels", recording_own)
    monkeypatch.setattr(loop, "merge_targets", recording_merge)
    return seen


def _stored_pseudo(cfg, iteration: int) -> dict:
    """The offline batch of ``iteration`` (MaskCLIP's stored labels on the crop)."""
    from maskclip_cli.formats.label_folder import LabelFolder
    from maskclip_cli.training.augment import AugmentConfig
    from maskclip_cli.training.pseudo_label_dataset import PseudoLabelDataset, batch_keys, find_samples

    samples, _ = find_samples(cfg.images, LabelFolder.open(cfg.labels), cfg.gt_labels)
    aug = AugmentConfig(cfg.crop_size, cfg.scale_min, cfg.scale_max, cfg.crop_size, cfg.flip, cfg.photometric)
    ds = PseudoLabelDataset(samples, len(CLASSES), aug, unseen=[CLASSES.index(u) for u in cfg.unseen])
    items = [ds[k] for k in batch_keys(len(ds), cfg.batch_size, cfg.seed, iteration)]
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def test_annotation_free_self_training_keeps_maskclip_labels_where_the_network_is_unsure(tmp_path, monkeypatch, maskclip):
    """The safeguard is on by default: a pixel takes the network's own label only at confidence
    >= ANCHOR, MaskCLIP's elsewhere. Before the fix every pixel took the network's own arg-max."""
    images, labels = make_dataset(tmp_path)
    seen = _record(monkeypatch)
    cfg = config(images, labels, tmp_path / "run", iters=3, self_train=True, guided_iters=1)
    loop.train(cfg, from_maskclip(maskclip))
    assert len(seen) == 2  # iterations 1 and 2 self-train
    for iteration, rec in enumerate(seen, start=1):
        batch = _stored_pseudo(cfg, iteration)
        valid = batch["valid"] != IGN
        want = torch.where(rec["conf"] >= ANCHOR, rec["own"], batch["pseudo"]).masked_fill(~valid, IGN)
        assert torch.equal(rec["target"], want)
        unsure = (rec["conf"] < ANCHOR) & valid
        assert unsure.any() and (rec["own"][unsure] != batch["pseudo"][unsure]).any()


def test_self_training_without_anchor_is_the_papers(tmp_path, monkeypatch, maskclip):
    images, labels = make_dataset(tmp_path)
    seen = _record(monkeypatch)
    cfg = config(images, labels, tmp_path / "run", iters=2, self_train=True, guided_iters=1, self_train_anchor=0.0)
    loop.train(cfg, from_maskclip(maskclip))
    batch = _stored_pseudo(cfg, 1)
    assert torch.equal(seen[0]["target"], seen[0]["own"].masked_fill(batch["valid"] == IGN, IGN))


def test_zero_shot_self_training_takes_the_network_over_unseen_classes(tmp_path, monkeypatch, maskclip):
    """The paper's setting: no anchor by default; unlabelled pixels get the arg-max over the unseen
    classes, ground-truth pixels keep their label."""
    images, labels = make_dataset(tmp_path)
    gt = tmp_path / "gt"
    for png in (labels / "labels").rglob("*.png"):
        (gt / png.relative_to(labels / "labels")).parent.mkdir(parents=True, exist_ok=True)
        (gt / png.relative_to(labels / "labels")).write_bytes(png.read_bytes())
    seen = _record(monkeypatch)
    cfg = config(images, labels, tmp_path / "run", iters=2, self_train=True, guided_iters=1, gt_labels=gt, unseen=["dog"])
    loop.train(cfg, from_maskclip(maskclip))
    rec = seen[0]
    dog = CLASSES.index("dog")
    assert (rec["own"] == dog).all()  # one unseen class: every pixel's arg-max is it
    batch = _stored_pseudo(cfg, 1)
    gt_crop = batch["gt"]
    assert (gt_crop != IGN).any() and not (gt_crop == dog).any()
    fill = (gt_crop == IGN) & (batch["valid"] != IGN)
    assert fill.any() and (rec["target"][fill] == dog).all()
    assert torch.equal(rec["target"][~fill], gt_crop[~fill])


@pytest.mark.parametrize("online", [False, True])
def test_resumed_self_training_switches_at_the_same_iteration_and_reproduces_the_weights(tmp_path, maskclip, online):
    """Interrupted during the guided phase and resumed: the same switch and bit-identical weights,
    offline and online (annotation-free, so the online labeller keeps anchoring after the switch)."""
    images, labels = make_dataset(tmp_path, n=4)
    kw = dict(iters=6, self_train=True, guided_iters=3, checkpoint_every=100, log_every=1, online=online)
    make = (lambda: OnlineLabeller(maskclip.clip, CLASSES, LABELLER_CFG, IMAGENET_MEAN, IMAGENET_STD)) if online else (lambda: None)
    text = from_maskclip(maskclip)
    loop.train(config(images, labels, tmp_path / "a", **kw), text, labeller=make())
    with pytest.raises(KeyboardInterrupt):
        loop.train(config(images, labels, tmp_path / "b", **kw), text, hook=InterruptAt(2), labeller=make())
    resumed = loop.train(config(images, labels, tmp_path / "b", **kw), None, resume=True, labeller=make())
    assert resumed.start == 2
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    for name, weight in a["model"].items():
        assert torch.equal(weight, b["model"][name]), name
    phases = [line.split('"phase": "')[1][:4] for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert phases == ["guid"] * 3 + ["self"] * 3
