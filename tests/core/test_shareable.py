"""Shared files show file paths relative to the working directory or by name, never the machine's
absolute paths; relative paths stay as given and everything else in the record is untouched."""

from __future__ import annotations

from maskclip_cli.core.record import BackboneSource, ClipSource, LabelRecord, TrainedNetwork, WeightsSource
from maskclip_cli.core.shareable import shareable_record, shown, shown_model


def test_shown(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert shown("runs/ckpt.pt") == "runs/ckpt.pt"  # as the user gave it
    assert shown(tmp_path / "runs/ckpt.pt") == "runs/ckpt.pt"  # inside the working directory
    assert shown(tmp_path) == "."
    assert shown("/home/someone/runs/ckpt.pt") == "ckpt.pt"  # elsewhere: the file name


def test_shown_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert shown_model("local-dir:/home/someone/models/clip") == "local-dir:clip"
    assert shown_model(f"local-dir:{tmp_path}/models/clip") == "local-dir:models/clip"
    assert shown_model("/home/someone/cfg/tiny.json") == "tiny.json"
    assert shown_model("ViT-B-16") == "ViT-B-16" and shown_model("hf-hub:org/model") == "hf-hub:org/model"


def test_shareable_record(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    record = LabelRecord(["background", "cat"],
                         ClipSource("/home/someone/cfg/tiny.json", WeightsSource("checkpoint", path="/home/someone/w.pt", sha256="ab" * 8), True),
                         segmenter="maskclip+", inference={"templates": "simple"},
                         network=TrainedNetwork("/home/someone/run/ckpt.pt", "cd" * 8, "deeplabv2", 100, 512))
    shared = shareable_record(record).to_dict()
    expected = record.to_dict()
    expected["clip"]["model"] = "tiny.json"
    expected["clip"]["weights"]["path"] = "w.pt"
    expected["network"]["checkpoint"] = "ckpt.pt"
    assert shared == expected and "/home/someone" not in str(shared)
    assert record.network.checkpoint == "/home/someone/run/ckpt.pt"  # the record itself is unchanged
    plain = LabelRecord(["a"], ClipSource("ViT-B-16", WeightsSource("tag", tag="openai")))
    assert shareable_record(plain).to_dict() == plain.to_dict()
    assert shareable_record(LabelRecord(["a"], None)).to_dict() == LabelRecord(["a"], None).to_dict()


def test_shareable_record_shows_the_backbones_weights_by_name(tmp_path, monkeypatch):
    """A ProxyCLIP/Trident record names its proxy and SAM weights files: shared, they show as the CLIP's do."""
    monkeypatch.chdir(tmp_path)
    record = LabelRecord(["cat"], ClipSource("ViT-B-16", WeightsSource("tag", tag="openai")),
                         backbones={"proxy": BackboneSource("vit_base_patch8_224.dino", WeightsSource("checkpoint", path="/home/someone/dino.pth", sha256="ef" * 8)),
                                    "sam": BackboneSource("samvit_base_patch16.sa1b", WeightsSource("tag", tag="sa1b"))})
    shared = shareable_record(record).to_dict()
    expected = record.to_dict()
    expected["backbones"]["proxy"]["weights"]["path"] = "dino.pth"
    assert shared == expected and "/home/someone" not in str(shared)
