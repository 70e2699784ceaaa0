"""The public Python API takes ``str`` as well as ``Path`` wherever it takes a path (the README's
``label_folder(seg, "images", "out", ...)``), from labelling through export, review, loading and training."""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import torch
from conftest import TINY_CONFIGS, make_tiny_clip

from maskclip_cli import (
    ExportOptions,
    LabelFolder,
    LabelOptions,
    MaskCLIPConfig,
    ReportOptions,
    TrainConfig,
    export_folder,
    label_folder,
    load_clip,
    write_overlays,
    write_report,
)
from maskclip_cli.engine.build import build_segmenter
from labelling.helpers import make_images


def test_label_export_and_review_take_str_paths(tmp_path):
    images = str(make_images(tmp_path / "images", {"a.jpg": (40, 30), "sub/b.png": (32, 48)}))
    out = str(tmp_path / "out")
    seg = build_segmenter(["cat", "dog"], MaskCLIPConfig(templates="simple", short_side=32), clip=make_tiny_clip("vit"),
                          cache_dir=str(tmp_path / "cache"))
    summary = label_folder(seg, images, out, LabelOptions(workers=0))
    assert summary.labelled == 2 and summary.failed == 0
    assert LabelFolder.open(out).class_names == ["cat", "dog"]
    assert export_folder(out, str(tmp_path / "coco"), ExportOptions(format="coco", images=images)).exported == 2
    assert write_overlays(out, images).written == 2
    write_report(out, str(tmp_path / "report.html"), ReportOptions(images=images))
    assert (tmp_path / "report.html").is_file()


def test_load_clip_and_train_config_take_str_paths(tmp_path):
    torch.manual_seed(0)
    model = open_clip.CLIP(**TINY_CONFIGS["vit"])
    torch.save(model.state_dict(), tmp_path / "tiny.pt")
    (tmp_path / "tiny-vit-paths.json").write_text(json.dumps(TINY_CONFIGS["vit"]))
    clip = load_clip(str(tmp_path / "tiny-vit-paths.json"), checkpoint=str(tmp_path / "tiny.pt"))
    assert torch.equal(clip.model.visual.conv1.weight, model.visual.conv1.weight)
    cfg = TrainConfig(images=str(tmp_path), labels=str(tmp_path), out=str(tmp_path / "run"), gt_labels=str(tmp_path),
                      val_images=str(tmp_path), val_labels=str(tmp_path), clip_checkpoint=str(tmp_path / "tiny.pt"))
    paths = (cfg.images, cfg.labels, cfg.out, cfg.gt_labels, cfg.val_images, cfg.val_labels, cfg.clip_checkpoint)
    assert all(isinstance(p, Path) for p in paths)
