"""DeepLabv2 with the CLIP text classifier: shapes, output stride, frozen classifier, weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torchvision.models import resnet18

from maskclip_cli.core.errors import MaskCLIPError
from maskclip_cli.training.deeplab import DeepLabV2, build_backbone
from maskclip_cli.training.loop import TrainConfig, _optimizer


def text_rows(r: int = 4, d: int = 16) -> torch.Tensor:
    torch.manual_seed(0)
    return F.normalize(torch.randn(r, d), dim=1) * 3  # not unit: the model must normalise


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
@pytest.mark.parametrize("size", [(64, 64), (65, 73)])
def test_output_stride_8(backbone, size):
    model = DeepLabV2(backbone, text_rows(), torch.arange(4), weights="none").eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 4, -(-size[0] // 8), -(-size[1] // 8))


def test_merged_background_takes_max_of_its_rows():
    model = DeepLabV2("resnet18", text_rows(), torch.tensor([0, 0, 1, 2]), weights="none").eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        per_row = model.classifier(model.aspp(model.features(x)))
        out = model(x)
    assert out.shape[1] == 3
    torch.testing.assert_close(out[:, 0], per_row[:, :2].amax(1))
    torch.testing.assert_close(out[:, 1:], per_row[:, 2:])


def test_classifier_is_the_frozen_text_embeddings():
    text = text_rows()
    model = DeepLabV2("resnet18", text, torch.arange(4), weights="none")
    expected = F.normalize(text, dim=1)[:, :, None, None]
    torch.testing.assert_close(model.classifier.weight, expected)
    aspp_before = model.aspp.branches[0].weight.clone()
    opt = _optimizer(model, TrainConfig(Path("."), Path("."), Path("."), lr=0.1))
    for _ in range(2):
        loss = F.cross_entropy(model(torch.randn(2, 3, 32, 32)), torch.randint(0, 4, (2, 4, 4)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert model.classifier.weight.grad is None
    torch.testing.assert_close(model.classifier.weight, expected)
    assert not torch.equal(model.aspp.branches[0].weight, aspp_before)


def test_backbone_weights_from_file(tmp_path):
    reference = resnet18()
    torch.save(reference.state_dict(), tmp_path / "r18.pth")
    net = build_backbone("resnet18", str(tmp_path / "r18.pth"))
    torch.testing.assert_close(net.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    torch.save({"something": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(MaskCLIPError, match="do not match"):
        build_backbone("resnet18", str(tmp_path / "bad.pth"))
    with pytest.raises(MaskCLIPError, match="not found"):
        build_backbone("resnet18", str(tmp_path / "missing.pth"))
    torch.save({**reference.state_dict(), "layer1.0.conv1.weight": torch.zeros(1)}, tmp_path / "other_shapes.pth")
    with pytest.raises(MaskCLIPError, match="do not match"):
        build_backbone("resnet18", str(tmp_path / "other_shapes.pth"))
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    with pytest.raises(MaskCLIPError, match="not a torchvision ResNet state dict"):
        build_backbone("resnet18", str(tmp_path / "tensor.pth"))
    (tmp_path / "text.pth").write_text("not weights")
    with pytest.raises(MaskCLIPError, match="Cannot read backbone weights"):
        build_backbone("resnet18", str(tmp_path / "text.pth"))


def test_imagenet_weights_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr("maskclip_cli.core._network.socket.create_connection", lambda *a, **k: (_ for _ in ()).throw(OSError()))
    with pytest.raises(MaskCLIPError, match="resnet18-f37072fd.pth"):
        build_backbone("resnet18", "imagenet")
    with pytest.raises(MaskCLIPError, match="Unknown backbone"):
        build_backbone("vgg16", "none")
