"""The typed record of how labels were made: round trips, 0.1.0 files, and what it reloads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from maskclip_cli.engine.maskclip import MaskCLIP, MaskCLIPConfig
from maskclip_cli.core.errors import MaskCLIPError
from maskclip_cli.formats.label_folder import LabelFolder
from maskclip_cli.labelling.label_job import LabelOptions, label_folder
from maskclip_cli.core.record import (
    BackboneSource,
    ClipSource,
    LabelRecord,
    TrainedNetwork,
    WeightsSource,
    record_hash,
)
from maskclip_cli.synthetic.assets import CHECKPOINT, MODEL_CONFIG, load_synthetic_clip
from maskclip_cli.training.class_text import class_text_for_labels

DATA = Path(__file__).parent / "data"


def test_record_round_trips_through_json():
    record = LabelRecord(
        classes=["background", "cat"], clip=ClipSource("/abs/cfg.json", WeightsSource("checkpoint", path="/w.pt", sha256="ab" * 32)),
        inference={"templates": "vild", "background": ["sky"], "short_side": 448}, synonyms={"cat": ["kitten"]},
        network=TrainedNetwork("/run/checkpoint.pt", "0123456789abcdef", "resnet18", 30, 64), min_confidence=0.5,
        confidence_format="npy",
    )
    back = LabelRecord.from_dict(json.loads(json.dumps(record.to_dict())))
    assert back == record
    assert record_hash(back) == record_hash(record)
    assert record_hash(LabelRecord(["cat"], None)) != record_hash(LabelRecord(["dog"], None))


def test_backbones_round_trip_and_appear_only_when_used():
    """ProxyCLIP's proxy and Trident's SAM are named beside CLIP; records without them keep their keys."""
    proxy = BackboneSource("vit_base_patch8_224.dino", WeightsSource("tag", tag="dino"))
    sam = BackboneSource("samvit_base_patch16.sa1b", WeightsSource("checkpoint", path="/sam.pth", sha256="cd" * 32))
    record = LabelRecord(["cat"], None, inference={"method": "trident"}, backbones={"proxy": proxy, "sam": sam})
    data = json.loads(json.dumps(record.to_dict()))
    assert data["backbones"]["sam"]["weights"]["path"] == "/sam.pth" and LabelRecord.from_dict(data) == record
    assert "backbones" not in LabelRecord(["cat"], None).to_dict()


def test_weights_labels_keep_the_0_1_0_identities():
    """The short label keys text-embedding caches: it must not change for the same weights."""
    assert WeightsSource("tag", tag="openai").label == "openai"
    assert WeightsSource("checkpoint", sha256="f" * 64).label == "checkpoint:" + "f" * 16
    assert WeightsSource("random").label == "none"
    assert WeightsSource.from_legacy("checkpoint:0123456789abcdef", "/x.pt") == WeightsSource("checkpoint", path="/x.pt", sha256="0123456789abcdef")
    with pytest.raises(ValueError):
        WeightsSource("url")


def test_a_stored_0_1_0_classes_json_still_loads(tmp_path):
    """classes.json written by maskclip 0.1.0 (labels made with --checkpoint and --background)."""
    shutil.copy(DATA / "classes-0.1.0.json", tmp_path / "classes.json")
    folder = LabelFolder.open(tmp_path)
    record = folder.record
    assert folder.class_names == record.classes == ["background", "cat", "coffee cup"]
    assert record.segmenter == "maskclip" and record.version == 2
    assert record.clip == ClipSource("maskclip-synthetic-vit", WeightsSource("checkpoint", sha256="32d9f8976943ad1b"))
    assert record.background == ["sky", "wall"] and record.templates == "vild"
    assert record.inference["short_side"] == 64 and record.inference["key_smoothing"] is True
    assert record.confidence_format == "png" and record.min_confidence is None


def test_a_0_1_0_trained_network_record_loads():
    """Labels made by `label --segmenter` in 0.1.0 nested the CLIP under "clip"."""
    old = {"segmenter": "maskclip+", "checkpoint": "/runs/a/checkpoint.pt@0123456789abcdef", "backbone": "resnet101",
           "iteration": 8000, "classes": ["cat", "dog"], "short_side": 512,
           "clip": {"model": "ViT-B-16", "weights": "openai", "templates": "vild", "background": [], "checkpoint": None},
           "min_confidence": None, "confidence_format": "png"}
    record = LabelRecord.from_dict(old)
    assert record.segmenter == "maskclip+" and record.classes == ["cat", "dog"]
    assert record.network == TrainedNetwork("/runs/a/checkpoint.pt", "0123456789abcdef", "resnet101", 8000, 512)
    assert record.clip == ClipSource("ViT-B-16", WeightsSource("tag", tag="openai"))


def test_a_newer_record_is_refused_with_a_clear_error(tmp_path):
    doc = json.loads((DATA / "classes-0.1.0.json").read_text())
    doc["settings"] = {"record_version": 99}
    (tmp_path / "classes.json").write_text(json.dumps(doc))
    with pytest.raises(Exception, match="upgrade maskclip"):
        LabelFolder.open(tmp_path)


def test_labels_made_with_a_config_and_checkpoint_rebuild_their_text_without_options(tmp_path, monkeypatch):
    """Issue 8 bug: classes.json must name the checkpoint (and the config file) that made the labels,
    so training rebuilds the same classifier without --model/--checkpoint, from any directory."""
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image

    Image.new("RGB", (24, 24), (200, 30, 30)).save(images / "a.png")
    clip = load_synthetic_clip()
    seg = MaskCLIP(clip, ["red circle", "blue square"], MaskCLIPConfig(templates="simple", background=["grey background"], short_side=32))
    label_folder(seg, images, tmp_path / "out", LabelOptions(workers=0))
    monkeypatch.chdir(tmp_path)  # paths in the record are absolute
    record = LabelFolder.open(tmp_path / "out").record
    assert record.clip.model == str(MODEL_CONFIG.resolve())
    assert record.clip.weights.kind == "checkpoint" and Path(record.clip.weights.path) == CHECKPOINT.resolve()
    text = class_text_for_labels(record)
    assert text.class_names == seg.class_names
    assert torch.allclose(text.text, seg.text.cpu()) and torch.equal(text.groups, seg.groups)
    assert text.record.clip == record.clip


def test_class_text_rebuilds_synonyms_and_method(tmp_path):
    """Labels made with synonyms and a successor method give the classifier the same rows and groups."""
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (24, 24), (200, 30, 30)).save(images / "a.png")
    clip = load_synthetic_clip()
    cfg = MaskCLIPConfig(method="naclip", templates="simple", background=["background"], short_side=32)
    seg = MaskCLIP(clip, [["red", "red circle"], "blue"], cfg)
    label_folder(seg, images, tmp_path / "out", LabelOptions(workers=0))
    record = LabelFolder.open(tmp_path / "out").record
    assert record.synonyms == {"red": ["red", "red circle"]} and record.inference["method"] == "naclip"
    text = class_text_for_labels(record)
    assert text.class_names == ["background", "red", "blue"] and text.groups.tolist() == [0, 1, 1, 2]
    assert torch.allclose(text.text, seg.text.cpu())
    with pytest.raises(MaskCLIPError, match="made with --method naclip"):
        class_text_for_labels(record, method="sclip")
