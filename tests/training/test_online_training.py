"""Online MaskCLIP+ in the training loop, and ``--resume`` with more iterations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from maskclip_cli.engine.maskclip import MaskCLIP, MaskCLIPConfig
from maskclip_cli.core.errors import MaskCLIPError
from maskclip_cli.training import loop, pseudo_label_dataset
from maskclip_cli.core.constants import IMAGENET_MEAN, IMAGENET_STD
from maskclip_cli.training.augment import AugmentConfig
from maskclip_cli.training.class_text import from_maskclip
from maskclip_cli.training.online_labeller import OnlineLabeller
from maskclip_cli.training.pseudo_label_dataset import PseudoLabelDataset, batch_keys, find_samples

from conftest import make_tiny_clip
from test_train import CLASSES, config, make_dataset

IGN = 255
LABELLER_CFG = MaskCLIPConfig(templates="simple", key_smoothing=False, prompt_denoising=False)


@pytest.fixture(scope="module")
def maskclip() -> MaskCLIP:
    return MaskCLIP(make_tiny_clip("vit"), CLASSES, LABELLER_CFG)


def _labeller(mc: MaskCLIP) -> OnlineLabeller:
    return OnlineLabeller(mc.clip, CLASSES, LABELLER_CFG, IMAGENET_MEAN, IMAGENET_STD)


def _record_targets(monkeypatch) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(gt, pseudo, target) of every step, seen where the loop merges them."""
    seen, merge = [], loop.merge_targets

    def recording(gt, pseudo, unseen):
        target = merge(gt, pseudo, unseen)
        seen.append((gt.clone(), pseudo.clone(), target.clone()))
        return target

    monkeypatch.setattr(loop, "merge_targets", recording)
    return seen


def _crops(cfg, iteration: int, gt_dir=None, unseen=None) -> dict:
    """The batch of ``iteration`` as the loop's data path builds it."""
    samples, _ = find_samples(cfg.images, None, gt_dir)
    aug = AugmentConfig(cfg.crop_size, cfg.scale_min, cfg.scale_max, cfg.crop_size, cfg.flip, cfg.photometric)
    ds = PseudoLabelDataset(samples, len(CLASSES), aug, unseen=unseen)
    items = [ds[k] for k in batch_keys(len(ds), cfg.batch_size, cfg.seed, iteration)]
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def _by_hand(mc: MaskCLIP, x: torch.Tensor, names: list[str]) -> torch.Tensor:
    """MaskCLIP over ``names`` on the crops: CLIP normalisation, probabilities, bilinear to the crop, arg-max."""
    rgb = x * torch.tensor(IMAGENET_STD)[:, None, None] + torch.tensor(IMAGENET_MEAN)[:, None, None]
    x_clip = (rgb - torch.tensor(mc.clip.mean)[:, None, None]) / torch.tensor(mc.clip.std)[:, None, None]
    probs = MaskCLIP(mc.clip, names, LABELLER_CFG).scores(x_clip)
    idx = F.interpolate(probs, size=x.shape[-2:], mode="bilinear", align_corners=False).argmax(dim=1)
    return torch.tensor([CLASSES.index(n) for n in names])[idx]


def test_online_targets_are_the_labellers_output_on_the_crop(tmp_path, monkeypatch, maskclip):
    images, labels = make_dataset(tmp_path)
    seen = _record_targets(monkeypatch)
    cfg = config(images, labels, tmp_path / "run", iters=2, online=True, scale_min=0.5, scale_max=0.8)
    loop.train(cfg, from_maskclip(maskclip), labeller=_labeller(maskclip))
    assert len(seen) == 2
    for iteration, (_, pseudo, target) in enumerate(seen):
        batch = _crops(cfg, iteration)
        want = _by_hand(maskclip, batch["image"], CLASSES).masked_fill(batch["valid"] == IGN, IGN)
        assert torch.equal(target, want) and torch.equal(pseudo, want)
        assert len(want.unique()) > 1
    assert all((t == IGN).any() for _, _, t in seen)  # crops smaller than 64: padding stays ignored


def test_online_trains_without_label_maps(tmp_path, maskclip):
    images, labels = make_dataset(tmp_path, n=2)
    for png in (labels / "labels").rglob("*.png"):
        png.unlink()
    summary = loop.train(config(images, labels, tmp_path / "run", iters=2, online=True), from_maskclip(maskclip),
                         labeller=_labeller(maskclip))
    assert summary.iterations == 2


def _gt_folder(tmp_path, labels):
    gt = tmp_path / "gt"
    for png in (labels / "labels").rglob("*.png"):
        dest = gt / png.relative_to(labels / "labels")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(png.read_bytes())
    return gt


def test_zero_shot_online_fills_unlabelled_pixels_with_unseen_classes_only(tmp_path, monkeypatch, maskclip):
    images, labels = make_dataset(tmp_path, n=4)
    gt = _gt_folder(tmp_path, labels)
    seen = _record_targets(monkeypatch)
    cfg = config(images, labels, tmp_path / "run", iters=2, online=True, gt_labels=gt, unseen=["dog", "grass"])
    loop.train(cfg, from_maskclip(maskclip), labeller=_labeller(maskclip))
    unseen = torch.tensor([CLASSES.index("dog"), CLASSES.index("grass")])
    for iteration, (g, pseudo, target) in enumerate(seen):
        batch = _crops(cfg, iteration, gt, unseen.tolist())
        assert torch.equal(g, batch["gt"]) and not torch.isin(g, unseen).any()
        labelled = g != IGN
        assert labelled.any() and torch.equal(target[labelled], g[labelled])  # seen GT untouched
        fill = ~labelled & (batch["valid"] != IGN)
        assert fill.any() and torch.isin(target[fill], unseen).all()
        want = _by_hand(maskclip, batch["image"], ["dog", "grass"])  # assign_label: arg-max over unseen only
        assert torch.equal(target[fill], want[fill])
        assert (target[batch["valid"] == IGN] == IGN).all()

    # ground truth that still carries an unseen class is refused before any step
    monkeypatch.setattr(pseudo_label_dataset, "mask_unseen", lambda g, u: g)
    with pytest.raises(MaskCLIPError, match="unseen"):
        loop.train(config(images, labels, tmp_path / "leak", iters=1, online=True, gt_labels=gt, unseen=["dog", "grass"]),
                   from_maskclip(maskclip), labeller=_labeller(maskclip))


def _lrs(run) -> dict[int, float]:
    return {r["iter"]: r["lr"] for r in map(json.loads, (run / loop.METRICS_FILE).read_text().splitlines()) if "lr" in r}


@pytest.mark.parametrize("online", [False, True])
def test_resume_extends_iterations_on_the_recomputed_schedule(tmp_path, maskclip, online):
    text = from_maskclip(maskclip)
    images, labels = make_dataset(tmp_path, n=4)
    run = tmp_path / "run"
    kw = dict(log_every=1, checkpoint_every=5, online=online, lr=0.01, poly_power=0.9)
    labeller = _labeller(maskclip) if online else None
    first = loop.train(config(images, labels, run, iters=10, **kw), text, labeller=labeller)
    second = loop.train(config(images, labels, run, iters=10, **kw), None, resume=True, iters=25, labeller=labeller)
    assert (second.start, second.iterations) == (10, 25)
    lrs = _lrs(run)
    # logged at iteration t+1: the LR used at step t
    for t in range(10):
        assert lrs[t + 1] == pytest.approx(0.01 * (1 - t / 10) ** 0.9, rel=1e-6)
    for t in range(10, 25):
        assert lrs[t + 1] == pytest.approx(0.01 * (1 - t / 25) ** 0.9, rel=1e-6)
    losses = first.losses + second.losses
    assert all(torch.isfinite(torch.tensor(losses))) and max(second.losses) < 2 * max(first.losses)
    saved = json.loads((run / loop.CONFIG_FILE).read_text())
    assert saved["iters"] == 25
    with pytest.raises(MaskCLIPError, match="below"):
        loop.train(config(images, labels, run, iters=10, **kw), None, resume=True, iters=20, labeller=labeller)


def test_resume_extension_keeps_the_guided_phase(tmp_path, maskclip):
    text = from_maskclip(maskclip)
    images, labels = make_dataset(tmp_path, n=2)
    run = tmp_path / "run"
    loop.train(config(images, labels, run, iters=10, self_train=True, log_every=1), text)
    loop.train(config(images, labels, run), None, resume=True, iters=14)
    phases = [r["phase"] for r in map(json.loads, (run / loop.METRICS_FILE).read_text().splitlines())]
    assert phases == ["guided"] + ["self"] * 13  # iters // 10 = 1 guided iteration, as the run started


def _online_cli(tmp_path) -> tuple[list[str], list[str], Path, Path]:
    """(train's common options on two synthetic images, a tiny CLIP's --model/--checkpoint, run folder, weights)."""
    from conftest import TINY_CONFIGS

    images, _ = make_dataset(tmp_path, n=2)
    model_cfg, weights = tmp_path / "tiny-vit.json", tmp_path / "tiny-vit.pt"
    model_cfg.write_text(json.dumps(TINY_CONFIGS["vit"]))
    torch.save(make_tiny_clip("vit").model.state_dict(), weights)
    out = tmp_path / "run"
    common = ["train", "--images", str(images), "--out", str(out), "--backbone", "resnet18", "--backbone-weights", "none",
              "--batch-size", "1", "--crop-size", "48", "--workers", "0", "--device", "cpu", "--no-progress"]
    return common, ["--model", str(model_cfg), "--checkpoint", str(weights)], out, weights


def test_cli_online_from_an_image_folder_and_resume(tmp_path):
    """`train --online --classes` with no label folder; the resumed run rebuilds the labeller from its checkpoint."""
    from typer.testing import CliRunner

    from maskclip_cli.cli import app
    from maskclip_cli.training.checkpointing import load_checkpoint

    common, clip_args, out, weights = _online_cli(tmp_path)
    labelling = ["--online", "--classes", "cat,dog", "--background", "grass,field", "--templates", "simple",
                 "--no-key-smoothing", *clip_args]
    result = CliRunner().invoke(app, [*common, *labelling, "--iters", "2"])
    assert result.exit_code == 0, result.output
    meta = load_checkpoint(out / "checkpoint.pt")["meta"]
    assert meta["class_names"] == ["background", "cat", "dog"]
    assert meta["labeller"]["inference"]["key_smoothing"] is False
    assert meta["labeller"]["clip"]["weights"]["path"] == str(weights.resolve())

    result = CliRunner().invoke(app, [*common, "--resume", "--iters", "3"])
    assert result.exit_code == 0, result.output
    assert "Trained iterations 2->3" in result.output

    for bad in ([*common[:3], str(tmp_path / "x"), *common[5:]],  # neither --labels nor --online
                [*common[:3], str(tmp_path / "y"), *common[5:], "--labels", str(tmp_path / "labelled"), "--classes", "cat"]):
        result = CliRunner().invoke(app, bad)
        assert result.exit_code == 2 and "Traceback" not in result.output


def test_cli_online_with_proxyclip_keeps_its_proxy_across_resume(tmp_path, monkeypatch):
    """`train --online --method proxyclip --proxy-checkpoint`: the labeller loads the proxy, the
    checkpoint names it, and the resumed run loads it again from that record."""
    import safetensors.torch
    import timm
    from typer.testing import CliRunner

    from maskclip_cli.cli import app
    from maskclip_cli.training.checkpointing import load_checkpoint

    create = timm.create_model
    monkeypatch.setattr(timm, "create_model", lambda name, *a, **k: create(name, *a, **{"depth": 1, **k}))
    proxy = tmp_path / "dino.safetensors"
    safetensors.torch.save_file(create("vit_small_patch16_224.dino", pretrained=False, depth=1).state_dict(), proxy)
    common, clip_args, out, _ = _online_cli(tmp_path)
    labelling = ["--online", "--classes", "cat,dog", "--templates", "simple", *clip_args, "--method", "proxyclip",
                 "--proxy-model", "vit_small_patch16_224.dino", "--proxy-checkpoint", str(proxy)]
    result = CliRunner().invoke(app, [*common, *labelling, "--iters", "1"])
    assert result.exit_code == 0, result.output
    labeller = load_checkpoint(out / "checkpoint.pt")["meta"]["labeller"]
    assert labeller["inference"]["method"] == "proxyclip" and labeller["inference"]["proxy_beta"] == 1.2
    assert labeller["backbones"]["proxy"]["model"] == "vit_small_patch16_224.dino"
    assert labeller["backbones"]["proxy"]["weights"]["path"] == str(proxy.resolve())
    result = CliRunner().invoke(app, [*common, "--resume", "--iters", "2"])
    assert result.exit_code == 0 and "Trained iterations 1->2" in result.output, result.output
