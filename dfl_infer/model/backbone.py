"""ResNet and FPN building blocks with torchvision's layout, without importing torchvision.

Importing torchvision pulls in torch._dynamo and made a one-image ``dfl-infer`` run 1.9-2.5 s
(29-41%) slower on our CPU (docs/performance.md); the network needs only these two pieces.
Module and parameter names, shapes, initialisation and arithmetic follow torchvision's
``models.resnet`` and ``ops.FeaturePyramidNetwork`` (He et al., 2016; Lin et al., 2017), so
torchvision checkpoints (e.g. ImageNet ResNets) load into them unchanged;
``tests/test_model.py`` checks names, shapes and outputs against torchvision itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Blocks per stage of each depth (He et al., 2016, table 1); resnet10 is our 1-block variant.
RESNET_LAYERS = {
    "resnet10": ("basic", (1, 1, 1, 1)),
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int, downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        y: torch.Tensor = self.relu(out + identity)
        return y


class Bottleneck(nn.Module):
    """ResNet v1.5: the stride sits in the 3x3 convolution, as in torchvision."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int, downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = _conv1x1(cin, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv1x1(width, width * self.expansion)
        self.bn3 = nn.BatchNorm2d(width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        y: torch.Tensor = self.relu(out + identity)
        return y


class ResNet(nn.Module):
    """The convolutional part of a ResNet (no pooling head): ``conv1``, ``bn1``, ``relu``,
    ``maxpool``, ``layer1``-``layer4``; ``out_channels`` of each stage."""

    # Set in __init__ by name (setattr), as torchvision names them.
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    def __init__(self, name: str) -> None:
        super().__init__()
        if name not in RESNET_LAYERS:
            raise ValueError(f"backbone must be one of {tuple(RESNET_LAYERS)}, got {name!r}")
        kind, depths = RESNET_LAYERS[name]
        block: type[BasicBlock] | type[Bottleneck] = BasicBlock if kind == "basic" else Bottleneck
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        cin, self.out_channels = 64, []
        for i, (width, depth) in enumerate(zip((64, 128, 256, 512), depths)):
            stride = 1 if i == 0 else 2
            cout = width * block.expansion
            down = None
            if stride != 1 or cin != cout:
                down = nn.Sequential(_conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))
            blocks: list[nn.Module] = [block(cin, width, stride, down)]
            blocks += [block(cout, width, 1, None) for _ in range(depth - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            self.out_channels.append(cout)
            cin = cout
        # torchvision builds its classifier here; building (and dropping) one draws the same
        # random numbers, so a seeded model gets torchvision's initial weights bit for bit.
        nn.Linear(cin, 1000)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)


class FeaturePyramid(nn.Module):
    """Top-down FPN (Lin et al., 2017) with torchvision's names: ``inner_blocks.i.0`` (1x1
    lateral) and ``layer_blocks.i.0`` (3x3 output) per level; nearest-neighbour upsampling."""

    def __init__(self, in_channels: list[int], out_channels: int) -> None:
        super().__init__()
        inner, layer = [], []
        for c in in_channels:  # interleaved, as torchvision draws their initial weights
            inner.append(nn.Sequential(nn.Conv2d(c, out_channels, 1)))
            layer.append(nn.Sequential(nn.Conv2d(out_channels, out_channels, 3, padding=1)))
        self.inner_blocks = nn.ModuleList(inner)
        self.layer_blocks = nn.ModuleList(layer)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                if m.bias is not None:  # always here: every FPN convolution has a bias
                    nn.init.constant_(m.bias, 0)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """``feats`` finest first -> FPN levels, finest first."""
        last = self.inner_blocks[-1](feats[-1])
        outs = [self.layer_blocks[-1](last)]
        for i in range(len(feats) - 2, -1, -1):
            lateral = self.inner_blocks[i](feats[i])
            last = lateral + F.interpolate(last, size=lateral.shape[-2:], mode="nearest")
            outs.insert(0, self.layer_blocks[i](last))
        return outs
