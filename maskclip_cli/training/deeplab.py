"""DeepLabv2 whose classifier is CLIP's text embeddings: the MaskCLIP+ target network.

A torchvision ResNet dilated to output stride 8, an ASPP head (four parallel 3x3 convolutions with
dilations 6/12/18/24, summed) that projects to the CLIP embedding dimension, then a frozen 1x1
convolution whose weights are the class text embeddings. Keeping CLIP's classifier keeps CLIP's
class space, so the network can learn classes it never saw ground truth for (paper §3.4).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torchvision.models import resnet

from ..core._network import reachable
from ..engine.class_groups import reduce_groups
from ..core.errors import MaskCLIPError

BACKBONES = ("resnet18", "resnet50", "resnet101")
ASPP_DILATIONS = (6, 12, 18, 24)
OUTPUT_STRIDE = 8
IMAGENET = "imagenet"
NO_WEIGHTS = "none"


def _dilate_basic_blocks(layer: nn.Sequential, dilation: int) -> None:
    """Turn a BasicBlock stage's stride 2 into dilation (torchvision only does this for Bottleneck)."""
    for block in layer:
        for conv in (block.conv1, block.conv2):
            conv.stride, conv.dilation, conv.padding = (1, 1), (dilation, dilation), (dilation, dilation)
        if block.downsample is not None:
            block.downsample[0].stride = (1, 1)


def _imagenet_state(name: str) -> dict:
    """torchvision's ImageNet weights: from torch hub's cache, downloaded only when reachable."""
    weights = torchvision.models.get_model_weights(name).IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not cached.is_file():
        if not reachable("download.pytorch.org"):
            raise MaskCLIPError(
                f"ImageNet weights for {name} are not in torch's cache ({cached}) and download.pytorch.org "
                f"cannot be reached. Download {weights.url} into {cached.parent} on a connected machine, pass "
                "--backbone-weights PATH to a torchvision ResNet state dict, or --backbone-weights none "
                "(random init)."
            ) from None
    return weights.get_state_dict(progress=False)


def _file_state(path: Path) -> dict:
    if not path.is_file():
        raise MaskCLIPError(f"Backbone weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, or one holding more than tensors
        raise MaskCLIPError(f"Cannot read backbone weights {path} ({type(exc).__name__}); pass a torchvision ResNet state dict.") from exc
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise MaskCLIPError(f"Backbone weights {path} hold a {type(state).__name__}, not a torchvision ResNet state dict.")
    return state


def build_backbone(name: str, weights: str = IMAGENET) -> nn.Module:
    """ResNet ``name`` without pooling/fc, dilated to output stride 8, with ``weights``
    (imagenet, none, or a path to a torchvision-layout state dict)."""
    if name not in BACKBONES:
        raise MaskCLIPError(f"Unknown backbone '{name}'; choose one of {', '.join(BACKBONES)}.")
    bottleneck = name != "resnet18"
    net = getattr(resnet, name)(weights=None, replace_stride_with_dilation=[False, True, True] if bottleneck else None)
    if not bottleneck:
        _dilate_basic_blocks(net.layer3, 2)
        _dilate_basic_blocks(net.layer4, 4)
    if weights != NO_WEIGHTS:
        state = _imagenet_state(name) if weights == IMAGENET else _file_state(Path(weights))
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        mismatch = f"Backbone weights {weights} do not match torchvision's {name}."
        try:
            missing, unexpected = net.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # tensor shapes differ, e.g. another ResNet depth's weights
            raise MaskCLIPError(mismatch) from exc
        if unexpected or [k for k in missing if not k.startswith("fc.")]:
            raise MaskCLIPError(mismatch)
    net.fc, net.avgpool = nn.Identity(), nn.Identity()
    return net


def feature_channels(backbone: nn.Module) -> int:
    last = backbone.layer4[-1]
    return (last.bn3 if hasattr(last, "bn3") else last.bn2).num_features


class ASPP(nn.Module):
    """DeepLabv2's atrous spatial pyramid: parallel dilated 3x3 convolutions, summed."""

    def __init__(self, in_channels: int, out_channels: int, dilations: tuple[int, ...] = ASPP_DILATIONS):
        super().__init__()
        self.branches = nn.ModuleList(nn.Conv2d(in_channels, out_channels, 3, padding=d, dilation=d) for d in dilations)
        for conv in self.branches:
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(branch(x) for branch in self.branches)


class DeepLabV2(nn.Module):
    """ResNet-ASPP producing CLIP-space features, classified by frozen text embeddings.

    ``text`` is (R, D) unit-norm prompt embeddings and ``groups`` (R,) the class of each row; a
    class with several rows (a merged background) takes their max, as MaskCLIP does.
    """

    def __init__(self, backbone: str, text: torch.Tensor, groups: torch.Tensor, weights: str = IMAGENET):
        super().__init__()
        self.backbone_name = backbone
        self.backbone = build_backbone(backbone, weights)
        self.aspp = ASPP(feature_channels(self.backbone), text.shape[1])
        self.classifier = nn.Conv2d(text.shape[1], text.shape[0], 1, bias=False)
        self.classifier.weight.data.copy_(F.normalize(text.float(), dim=1)[:, :, None, None])
        self.classifier.requires_grad_(False)
        self.register_buffer("groups", groups.clone().long(), persistent=False)
        self.n_classes = int(groups.max()) + 1

    def features(self, x: torch.Tensor) -> torch.Tensor:
        b = self.backbone
        x = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        return b.layer4(b.layer3(b.layer2(b.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> class logits (B, C, ceil(H/8), ceil(W/8))."""
        return reduce_groups(self.classifier(self.aspp(self.features(x))), self.groups, self.n_classes)

    @torch.no_grad()
    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Float logits in eval mode (batch statistics untouched), fp16 autocast on GPU; the
        train/eval mode is restored afterwards, so it is safe in the middle of training."""
        was_training = self.training
        self.eval()
        with torch.autocast(x.device.type, enabled=x.device.type == "cuda"):
            logits = self(x)
        self.train(was_training)
        return logits.float()
