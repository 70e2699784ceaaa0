"""Self-training (issue 19): labels from the training pass or a mean teacher, CBST class-balanced
selection, the annotation-free anchor, zero-shot restriction, and exact resume across the switch
(teacher included), offline and online."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from maskclip_cli.core.constants import IMAGENET_MEAN, IMAGENET_STD
from maskclip_cli.engine.maskclip import MaskCLIP, MaskCLIPConfig
from maskclip_cli.training import loop
from maskclip_cli.training.class_text import from_maskclip
from maskclip_cli.training.config import ANCHOR
from maskclip_cli.training.online_labeller import OnlineLabeller
from maskclip_cli.training.self_training import MeanTeacher, balanced, class_thresholds, self_labels

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


def test_mean_teacher_is_the_exponential_moving_average_of_the_network():
    torch.manual_seed(0)
    student = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Conv2d(4, 2, 1))
    teacher = MeanTeacher(student, 0.9)
    start = [p.detach().clone() for p in student.parameters()]
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p))
    student(torch.randn(2, 3, 8, 8))  # train mode: new batch-norm statistics
    teacher.update(student)
    for t, s0, s in zip(teacher.model.parameters(), start, student.parameters()):
        want = 0.9 * s0.numpy().astype(np.float64) + 0.1 * s.detach().numpy().astype(np.float64)
        assert np.abs(t.numpy() - want).max() <= 1e-5 * np.abs(want).max()
        assert not torch.equal(t, s) and not t.requires_grad
    for t, s in zip(teacher.model.buffers(), student.buffers()):
        assert torch.equal(t, s)
    assert not teacher.model.training and student.training


def test_class_thresholds_are_the_per_class_percentiles():
    torch.manual_seed(0)
    labels = torch.randint(0, 4, (2, 16, 16))
    labels[0, :4] = IGN
    conf = torch.rand(2, 16, 16) * 0.5 + 0.5
    thr = class_thresholds(labels, conf, 0.3, 5)
    for c in range(4):
        want = np.percentile(conf[labels == c].numpy().astype(np.float64), 70)
        assert abs(thr[c].item() - want) <= 1e-5 * want
    assert thr[4] == 0  # no pixel has class 4
    guide = torch.full_like(labels, 7)
    out = balanced(labels, conf, 0.3, 5, guide)
    kept = (labels != IGN) & (conf >= thr[labels.clamp(max=4)])
    assert torch.equal(out, torch.where(kept, labels, guide))
    assert 0.25 < kept.sum() / (labels != IGN).sum() < 0.35
    assert torch.equal(balanced(labels, conf, 0.3, 5, None), torch.where(kept, labels, IGN))


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


@pytest.mark.parametrize("portion", [1.0, 0.5])
def test_annotation_free_self_training_keeps_maskclip_labels_where_the_network_is_unsure(tmp_path, monkeypatch, maskclip, portion):
    """The safeguards: a pixel takes the teacher's label only at confidence >= ANCHOR and, with CBST,
    among the most confident ``portion`` of its class; MaskCLIP's elsewhere. Before the fix every
    pixel took the network's own arg-max."""
    images, labels = make_dataset(tmp_path)
    seen = _record(monkeypatch)
    cfg = config(images, labels, tmp_path / "run", iters=3, self_train=True, guided_iters=1, self_train_portion=portion)
    loop.train(cfg, from_maskclip(maskclip))
    assert len(seen) == 2  # iterations 1 and 2 self-train
    for iteration, rec in enumerate(seen, start=1):
        batch = _stored_pseudo(cfg, iteration)
        valid = batch["valid"] != IGN
        top = torch.ones_like(valid)
        for c in rec["own"][valid].unique():
            mine = valid & (rec["own"] == c)
            top[mine] = rec["conf"][mine] >= float(np.percentile(rec["conf"][mine].numpy(), 100 * (1 - portion)))
        want = torch.where((rec["conf"] >= ANCHOR) & top, rec["own"], batch["pseudo"]).masked_fill(~valid, IGN)
        assert torch.equal(rec["target"], want)
        unsure = (rec["conf"] < ANCHOR) & valid
        assert unsure.any() and (rec["own"][unsure] != batch["pseudo"][unsure]).any()


def test_self_training_without_anchor_is_the_papers(tmp_path, monkeypatch, maskclip):
    images, labels = make_dataset(tmp_path)
    seen = _record(monkeypatch)
    cfg = config(images, labels, tmp_path / "run", iters=2, self_train=True, guided_iters=1, self_train_anchor=0.0,
                 self_train_ema=0.0, self_train_portion=1.0)
    loop.train(cfg, from_maskclip(maskclip))
    batch = _stored_pseudo(cfg, 1)
    assert torch.equal(seen[0]["target"], seen[0]["own"].masked_fill(batch["valid"] == IGN, IGN))


def test_zero_shot_self_training_takes_the_network_over_unseen_classes(tmp_path, monkeypatch, maskclip):
    """The paper's setting (no anchor, every pixel): unlabelled pixels get the arg-max over the
    unseen classes, ground-truth pixels keep their label."""
    images, labels = make_dataset(tmp_path)
    gt = tmp_path / "gt"
    for png in (labels / "labels").rglob("*.png"):
        (gt / png.relative_to(labels / "labels")).parent.mkdir(parents=True, exist_ok=True)
        (gt / png.relative_to(labels / "labels")).write_bytes(png.read_bytes())
    seen = _record(monkeypatch)
    cfg = config(images, labels, tmp_path / "run", iters=2, self_train=True, guided_iters=1, gt_labels=gt, unseen=["dog"],
                 self_train_portion=1.0, self_train_anchor=0.0)
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


@pytest.mark.parametrize("online, stop", [(False, 2), (True, 2), (False, 4), (True, 4)])
def test_resumed_self_training_switches_at_the_same_iteration_and_reproduces_the_weights(tmp_path, maskclip, online, stop):
    """Interrupted during the guided phase, or after the switch (the mean teacher restored from the
    checkpoint), and resumed: the same switch and bit-identical weights, teacher included, offline
    and online (annotation-free, so the online labeller keeps anchoring after the switch)."""
    images, labels = make_dataset(tmp_path, n=4)
    kw = dict(iters=6, self_train=True, guided_iters=3, checkpoint_every=100, log_every=1, online=online)
    make = (lambda: OnlineLabeller(maskclip.clip, CLASSES, LABELLER_CFG, IMAGENET_MEAN, IMAGENET_STD)) if online else (lambda: None)
    text = from_maskclip(maskclip)
    loop.train(config(images, labels, tmp_path / "a", **kw), text, labeller=make())
    with pytest.raises(KeyboardInterrupt):
        loop.train(config(images, labels, tmp_path / "b", **kw), text, hook=InterruptAt(stop), labeller=make())
    assert ("teacher" in torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)) == (stop > 3)
    resumed = loop.train(config(images, labels, tmp_path / "b", **kw), None, resume=True, labeller=make())
    assert resumed.start == stop
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    for key in ("model", "teacher"):
        for name, weight in a[key].items():
            assert torch.equal(weight, b[key][name]), (key, name)
    assert not torch.equal(a["teacher"]["backbone.conv1.weight"], a["model"]["backbone.conv1.weight"])
    phases = [line.split('"phase": "')[1][:4] for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert phases == ["guid"] * 3 + ["self"] * 3
