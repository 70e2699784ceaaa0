"""MaskCLIP+ training end to end on CPU: tiny generated data, resnet18, crop 64."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_CONFIGS, make_tiny_clip
from PIL import Image

from maskclip_cli.engine.maskclip import MaskCLIP, MaskCLIPConfig
from maskclip_cli.core.errors import MaskCLIPError
from maskclip_cli.formats.label_files import palette, write_confidence, write_label_png
from maskclip_cli.formats.label_folder import LabelFolder
from maskclip_cli.core.record import ClipSource, LabelRecord, WeightsSource
from maskclip_cli.training.class_text import ClassText, from_maskclip
from maskclip_cli.training.loop import TrainConfig, train
from maskclip_cli.training.pseudo_label_dataset import batch_keys
from maskclip_cli.training.trained_segmenter import load_segmenter

CLASSES = ["grass", "cat", "dog"]
COLOURS = np.array([[40, 160, 40], [200, 60, 40], [40, 60, 200]], dtype=np.uint8)


def make_dataset(root: Path, n: int = 6, seed: int = 0) -> tuple[Path, Path]:
    """Images whose class is their colour (noisy), with label folders as `maskclip label` writes them."""
    rng = np.random.default_rng(seed)
    images, labels = root / "images", root / "labelled"
    for i in range(n):
        h, w = 48, 64
        lab = np.zeros((h, w), np.uint8)
        lab[:, w // 2 :] = 1 + i % 2
        lab[: h // 3, : w // 3] = 2 - i % 2
        img = COLOURS[lab] + rng.integers(-20, 20, (h, w, 3))
        rel = f"sub/img{i}" if i % 2 else f"img{i}"
        (images / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(images / f"{rel}.jpg", quality=95)
        write_label_png(labels / "labels" / f"{rel}.png", lab, palette(len(CLASSES)))
        write_confidence(labels / "confidence" / f"{rel}.png", np.full((h, w), 0.9, np.float32))
    record = LabelRecord(CLASSES, ClipSource("tiny-vit", WeightsSource("in-memory")), inference={"templates": "simple", "background": []})
    LabelFolder(labels).write_classes(record)
    return images, labels


@pytest.fixture(scope="module")
def text() -> ClassText:
    return from_maskclip(MaskCLIP(make_tiny_clip("vit"), CLASSES, MaskCLIPConfig(templates="simple")))


def config(images: Path, labels: Path, out: Path, **kw) -> TrainConfig:
    base = dict(backbone="resnet18", backbone_weights="none", iters=30, batch_size=2, crop_size=64, lr=0.02,
                workers=0, checkpoint_every=10, log_every=5, photometric=False)
    return TrainConfig(images, labels, out, **{**base, **kw})


class InterruptAt:
    """A hook that presses Ctrl-C (SIGINT to this process) after ``n`` iterations."""

    def __init__(self, n: int):
        self.n, self.seen = n, 0

    def __getattr__(self, name):
        return lambda *a, **k: None

    def advance(self, n: int = 1, **fields) -> None:
        self.seen += n
        if self.seen == self.n:
            os.kill(os.getpid(), signal.SIGINT)


def test_train_end_to_end(tmp_path, text):
    images, labels = make_dataset(tmp_path)
    out = tmp_path / "run"
    summary = train(config(images, labels, out), text)

    losses = summary.losses
    assert len(losses) == 30 and summary.iterations == 30
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10])
    records = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in records] == [5, 10, 15, 20, 25, 30]
    assert {"loss", "lr", "it_per_s", "phase"} <= records[0].keys()
    assert json.loads((out / "config.json").read_text())["backbone"] == "resnet18"

    seg = load_segmenter(out / "checkpoint.pt")
    assert seg.class_names == CLASSES
    assert seg.settings()["segmenter"] == "maskclip+" and seg.settings()["network"]["iteration"] == 30
    pred = seg.label_image(Image.open(images / "img0.jpg"))
    assert pred.labels.shape == (48, 64) and pred.confidence.shape == (48, 64)
    assert set(np.unique(pred.labels)) <= {0, 1, 2}


def test_trained_checkpoint_labels_a_folder(tmp_path, text):
    from maskclip_cli.labelling.label_job import LabelOptions, label_folder

    images, labels = make_dataset(tmp_path, n=2)
    train(config(images, labels, tmp_path / "run", iters=2), text)
    out = tmp_path / "relabelled"
    label_folder(load_segmenter(tmp_path / "run" / "checkpoint.pt"), images, out, LabelOptions(workers=0, writers=1))
    assert sorted(p.relative_to(out / "labels").as_posix() for p in (out / "labels").rglob("*.png")) == ["img0.png", "sub/img1.png"]
    doc = json.loads((out / "classes.json").read_text())
    assert [c["name"] for c in doc["classes"]] == CLASSES and doc["settings"]["segmenter"] == "maskclip+"


def test_resume_continues_exactly(tmp_path, text):
    """Interrupted at iteration 3 (guided) and resumed: every later loss, self-training ones included,
    equals the uninterrupted run's."""
    images, labels = make_dataset(tmp_path, n=4)
    kw = dict(iters=7, self_train=True, guided_iters=4, checkpoint_every=100, log_every=1)
    full = train(config(images, labels, tmp_path / "a", **kw), text)

    with pytest.raises(KeyboardInterrupt):
        train(config(images, labels, tmp_path / "b", **kw), text, hook=InterruptAt(3))
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["iteration"] == 3
    resumed = train(config(images, labels, tmp_path / "b", **kw), None, resume=True)

    assert resumed.start == 3 and resumed.iterations == 7
    assert resumed.losses == full.losses[3:]
    phases = [json.loads(ln)["phase"] for ln in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert phases == ["guided"] * 4 + ["self"] * 3


def test_existing_run_needs_resume(tmp_path, text):
    images, labels = make_dataset(tmp_path, n=2)
    train(config(images, labels, tmp_path / "run", iters=1), text)
    with pytest.raises(MaskCLIPError, match="--resume"):
        train(config(images, labels, tmp_path / "run", iters=1), text)


def test_batches_depend_only_on_seed_and_iteration():
    n, batch = 5, 2
    first_epoch = [k for it in range(2) for k in batch_keys(n, batch, 0, it)] + batch_keys(n, batch, 0, 2)[:1]
    assert sorted(i for i, _ in first_epoch) == list(range(n))
    assert batch_keys(n, batch, 0, 7) == batch_keys(n, batch, 0, 7)
    assert batch_keys(n, batch, 0, 7) != batch_keys(n, batch, 1, 7)
    ranks = batch_keys(n, batch, 0, 3, rank=0, world=2) + batch_keys(n, batch, 0, 3, rank=1, world=2)
    assert len({s for _, s in ranks}) == 4


def test_cli_train_with_validation(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from maskclip_cli.cli import app

    images, labels = make_dataset(tmp_path, n=2)
    model_cfg = tmp_path / "tiny-train-vit.json"
    model_cfg.write_text(json.dumps(TINY_CONFIGS["vit"]))
    common = ["--images", str(images), "--labels", str(labels), "--backbone", "resnet18", "--iters", "2",
              "--batch-size", "1", "--crop-size", "48", "--workers", "0", "--model", str(model_cfg),
              "--pretrained", "none", "--device", "cpu", "--no-progress"]
    out = tmp_path / "run"
    own = ["--out", str(out), "--backbone-weights", "none", "--val-images", str(images),
           "--val-labels", str(labels / "labels"), "--val-every", "2"]
    result = CliRunner().invoke(app, ["train", *common, *own])
    assert result.exit_code == 0, result.output
    assert (out / "checkpoint.pt").is_file()
    val = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "val" in r]
    assert val and val[0]["iter"] == 2 and "mIoU" in val[0]["val"]
    result = CliRunner().invoke(app, ["train", *common, *own, "--resume", "--iters", "2", "--lr", "0.5"])
    assert result.exit_code == 0, result.output
    assert "ignoring changed options: lr." in " ".join(result.output.split())
    assert "already at iteration 2" in result.output
    result = CliRunner().invoke(app, ["train", *common, *own, "--resume", "--iters", "3"])  # --iters extends the run
    assert result.exit_code == 0, result.output
    assert "from 2 to 3 iterations" in " ".join(result.output.split()) and "Trained iterations 2->3" in result.output

    # the trained network labels a folder through `maskclip label --segmenter`, and that folder trains
    # again with the CLIP recorded (nested) in its classes.json
    relabelled = tmp_path / "relabelled"
    result = CliRunner().invoke(app, ["label", str(images), "--out", str(relabelled), "--segmenter", str(out / "checkpoint.pt"),
                                      "--device", "cpu", "--workers", "0", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert (relabelled / "labels" / "sub" / "img1.png").is_file()
    again = ["train", "--images", str(images), "--labels", str(relabelled), "--out", str(tmp_path / "again"),
             "--backbone", "resnet18", "--backbone-weights", "none", "--iters", "1", "--batch-size", "1",
             "--crop-size", "48", "--workers", "0", "--device", "cpu", "--no-progress"]
    result = CliRunner().invoke(app, again)
    assert result.exit_code == 0, result.output

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr("maskclip_cli.core._network.socket.create_connection", lambda *a, **k: (_ for _ in ()).throw(OSError()))
    result = CliRunner().invoke(app, ["train", *common, "--out", str(tmp_path / "x"), "--backbone-weights", "imagenet"])
    assert result.exit_code == 2
    assert "--backbone-weights none" in " ".join(result.output.split()) and "Traceback" not in result.output


def test_zero_shot_run(tmp_path, text):
    images, labels = make_dataset(tmp_path, n=2)
    gt = tmp_path / "gt"
    for png in (labels / "labels").rglob("*.png"):
        dest = gt / png.relative_to(labels / "labels")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(png.read_bytes())
    summary = train(config(images, labels, tmp_path / "run", iters=3, gt_labels=gt, unseen=["dog"],
                           self_train=True, guided_iters=1), text)
    assert summary.iterations == 3
    with pytest.raises(MaskCLIPError, match="not in classes.json"):
        train(config(images, labels, tmp_path / "x", iters=1, gt_labels=gt, unseen=["horse"]), text)
    with pytest.raises(MaskCLIPError, match="both"):
        train(config(images, labels, tmp_path / "y", iters=1, unseen=["dog"]), text)
    Image.fromarray(np.full((48, 64), 9, np.uint8)).save(gt / "img0.png")
    for workers in (0, 2):  # raised in a loader worker, the error still reads as one line
        with pytest.raises(MaskCLIPError, match="holds class id 9") as err:
            train(config(images, labels, tmp_path / f"w{workers}", iters=2, gt_labels=gt, unseen=["dog"], workers=workers), text)
        assert "Traceback" not in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("option", ["--batch-size", "--checkpoint-every", "--log-every", "--val-every"])
def test_cli_refuses_zero_intervals(tmp_path, option):
    """A zero batch size or interval is a usage error (exit 2), not a ZeroDivisionError mid-run."""
    from typer.testing import CliRunner

    from maskclip_cli.cli import app

    result = CliRunner().invoke(app, ["train", "--images", str(tmp_path), "--labels", str(tmp_path),
                                      "--out", str(tmp_path / "run"), option, "0", "--no-progress"])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_resume_drops_a_half_written_metrics_line(tmp_path):
    """A run killed mid-write leaves a partial last line; resuming must not choke on it."""
    from maskclip_cli.training.loop import _trim_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"iter": 10, "loss": 1.0}\n{"iter": 20, "loss": 0.5}\n{"iter": 30, "lo')
    _trim_metrics(path, 20)
    assert [json.loads(ln)["iter"] for ln in path.read_text().splitlines()] == [10, 20]


@pytest.mark.parametrize("workers", [0, 2])
def test_pseudo_label_beyond_the_classes_is_one_clear_error(tmp_path, text, workers):
    """A pseudo label id >= the class count names its file instead of an IndexError in the loss."""
    images, labels = make_dataset(tmp_path, n=2)
    bad = labels / "labels" / "img0.png"
    write_label_png(bad, np.full((48, 64), 77, np.uint8), palette(78))
    with pytest.raises(MaskCLIPError, match="holds class id 77") as err:
        train(config(images, labels, tmp_path / "run", iters=2, workers=workers), text)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_resumed_metrics_average_the_same_window(tmp_path, text):
    """Interrupted between two metrics lines and resumed: the next line averages the same log_every
    losses as the uninterrupted run's (the running window travels in the checkpoint)."""
    images, labels = make_dataset(tmp_path, n=4)
    kw = dict(iters=8, checkpoint_every=100, log_every=4)
    train(config(images, labels, tmp_path / "a", **kw), text)
    with pytest.raises(KeyboardInterrupt):
        train(config(images, labels, tmp_path / "b", **kw), text, hook=InterruptAt(2))
    train(config(images, labels, tmp_path / "b", **kw), None, resume=True)

    def lines(run):
        return [json.loads(ln) for ln in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]

    assert [r["iter"] for r in lines("b")] == [4, 8]
    for want, got in zip(lines("a"), lines("b")):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-6)


def test_resume_warns_only_about_typed_options_that_differ(tmp_path):
    """Options left at their defaults on the resume command line are not 'changed options'."""
    from typer.testing import CliRunner

    from maskclip_cli.cli import app

    images, labels = make_dataset(tmp_path, n=2)
    model_cfg = tmp_path / "tiny-train-vit.json"
    model_cfg.write_text(json.dumps(TINY_CONFIGS["vit"]))
    where = ["--images", str(images), "--labels", str(labels), "--out", str(tmp_path / "run"), "--workers", "0",
             "--device", "cpu", "--no-progress"]
    first = ["--backbone", "resnet18", "--backbone-weights", "none", "--iters", "1", "--batch-size", "1",
             "--crop-size", "48", "--lr", "0.02", "--model", str(model_cfg), "--pretrained", "none"]
    result = CliRunner().invoke(app, ["train", *where, *first])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["train", *where, "--resume"])
    assert result.exit_code == 0, result.output
    assert "ignoring changed options" not in result.output and "already at iteration 1" in result.output
    result = CliRunner().invoke(app, ["train", *where, "--resume", "--crop-size", "48", "--lr", "0.5"])
    assert "ignoring changed options: lr." in " ".join(result.output.split())
    result = CliRunner().invoke(app, ["train", *where, "--resume", "--pretrained", "openai"])
    assert "ignoring changed options: clip_pretrained." in " ".join(result.output.split())


def test_a_0_1_0_checkpoint_meta_gives_its_record():
    """0.1.0 checkpoints kept the classifier's CLIP as a flat ``clip`` dict; `label/eval --segmenter`
    on such a file must still describe its labels (it raised KeyError: 'record')."""
    from maskclip_cli.training.trained_segmenter import TrainedSegmenter

    meta = {"class_names": ["cat", "dog"], "backbone": "resnet18", "iteration": 30, "short_side": 64,
            "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225),
            "clip": {"model": "ViT-B-16", "weights": "openai", "templates": "vild", "background": [], "checkpoint": None}}
    record = TrainedSegmenter(torch.nn.Linear(1, 1), meta, "/runs/a/checkpoint.pt", "0123456789abcdef").record()
    assert record.segmenter == "maskclip+" and record.classes == ["cat", "dog"]
    assert record.clip.model == "ViT-B-16" and record.clip.weights.tag == "openai"
    assert record.network.iteration == 30 and record.network.sha256 == "0123456789abcdef"
