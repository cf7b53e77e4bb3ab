"""MediaPipe's hand-landmark network as a plain PyTorch module: the DFL encoder's trunk.

The layers are those of ``hand_landmarks_detector.tflite`` in MediaPipe's ``hand_landmarker.task``
bundle (``hand_landmark_full.tflite`` in the mediapipe 0.10.21 wheel; Apache-2.0): an
EfficientNet-lite-like stack of inverted-residual blocks with ReLU6, batch norm folded into the
convolutions (so every convolution has a bias and there is no BatchNorm), followed by a global
average pool and four fully connected heads. ``dfl_infer.training.init_backbone`` converts the
tflite weights into this module's state dict; nothing here reads tflite files.

Input: RGB in [0, 1], (B, 3, S, S) with S a multiple of 32 (MediaPipe itself uses 224; the trunk
is fully convolutional and DFL runs it at 256). Feature maps of the stages DFL taps: stride 4 (24
channels), 8 (40), 16 (112), 32 (192).

TensorFlow's "SAME" padding puts the extra pixel of a strided convolution at the bottom/right,
not symmetrically as PyTorch's ``padding=k // 2`` would; the blocks pad explicitly so the port
reproduces MediaPipe's landmarks to float round-off (``tests/test_mediapipe_hand.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# (expanded channels, depthwise kernel, stride, output channels) of each inverted-residual block,
# per stage, in the tflite graph's order. A block adds its input back when stride is 1 and the
# channels match. Stage outputs: strides 4, 8, 16, 16, 32 of the input.
STAGES: dict[str, tuple[tuple[int, int, int, int], ...]] = {
    "stage1": ((64, 3, 2, 24), (144, 3, 1, 24)),
    "stage2": ((144, 5, 2, 40), (240, 5, 1, 40)),
    "stage3": ((240, 3, 2, 80), (480, 3, 1, 80), (480, 3, 1, 80)),
    "stage4": ((480, 5, 1, 112), (672, 5, 1, 112), (672, 5, 1, 112)),
    "stage5": ((672, 5, 2, 192), (1152, 5, 1, 192), (1152, 5, 1, 192), (1152, 5, 1, 192)),
}
# Stages whose outputs DFL's FPN takes (strides 4, 8, 16, 32) and their channels.
TAPPED_STAGES = ("stage1", "stage2", "stage4", "stage5")
OUT_CHANNELS = [24, 40, 112, 192]


def same_padding(kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of TF's "SAME" for an input side divisible by ``stride``."""
    total = max(kernel - stride, 0)
    return total // 2, total - total // 2


class ConvAct(nn.Module):
    """Convolution (bias: batch norm folded in) with TF "SAME" padding, optionally ReLU6."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True
    ) -> None:
        super().__init__()
        before, after = same_padding(kernel, stride)
        # Symmetric padding is the convolution's own (no copy); only strided layers pad by hand.
        self.pad = (before, after, before, after) if before != after else None
        self.conv = nn.Conv2d(
            cin,
            cout,
            kernel,
            stride=stride,
            groups=groups,
            padding=before if before == after else 0,
        )
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad is not None:
            x = F.pad(x, self.pad)
        x = self.conv(x)
        # In place, as torchvision's MobileNets do: saves an allocation per layer.
        return F.relu6(x, inplace=True) if self.act else x


class InvertedResidual(nn.Module):
    """1x1 expansion (ReLU6) -> depthwise kxk (ReLU6) -> 1x1 linear projection (+ input).

    ``expand=None`` skips the expansion (the first block); ``cout=None`` skips the projection
    (the last block before the landmark head's pooling)."""

    def __init__(
        self, cin: int, expand: int | None, kernel: int, stride: int, cout: int | None
    ) -> None:
        super().__init__()
        mid = expand or cin
        self.expand = ConvAct(cin, mid, 1) if expand else None
        self.depthwise = ConvAct(mid, mid, kernel, stride, groups=mid)
        self.project = ConvAct(mid, cout, 1, act=False) if cout else None
        self.residual = stride == 1 and cout == cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.expand is None else self.expand(x)
        y = self.depthwise(y)
        if self.project is not None:
            y = self.project(y)
        out: torch.Tensor = x + y if self.residual else y
        return out


class MediaPipeHandTrunk(nn.Module):
    """The convolutional trunk up to stride 32. ``forward`` returns the feature maps at strides
    4, 8, 16 and 32 (finest first), with ``OUT_CHANNELS`` channels."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = ConvAct(3, 24, 3, stride=2)
        self.block0 = InvertedResidual(24, None, 3, 1, 16)
        cin = 16
        for name, blocks in STAGES.items():
            layers = []
            for expand, kernel, stride, cout in blocks:
                layers.append(InvertedResidual(cin, expand, kernel, stride, cout))
                cin = cout
            setattr(self, name, nn.Sequential(*layers))
        self.out_channels = list(OUT_CHANNELS)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.block0(self.stem(x))
        feats = []
        for name in STAGES:
            x = getattr(self, name)(x)
            if name in TAPPED_STAGES:
                feats.append(x)
        return feats


class MediaPipeHandLandmarker(nn.Module):
    """Trunk + MediaPipe's own landmark head, for parity checks against MediaPipe itself.

    ``forward(x)`` with x (B, 3, 224, 224) RGB in [0, 1] returns a dict: ``landmarks`` (B, 21, 3)
    x, y in input pixels and a relative z; ``presence`` (B,) and ``handedness`` (B,)
    probabilities (handedness > 0.5: a right hand as MediaPipe's model reports it for an
    unmirrored image); ``world_landmarks`` (B, 21, 3) metres.
    """

    def __init__(self) -> None:
        super().__init__()
        self.trunk = MediaPipeHandTrunk()
        self.head_block = InvertedResidual(192, 1152, 3, 1, None)
        self.handedness = nn.Linear(1152, 1)
        self.presence = nn.Linear(1152, 1)
        self.landmarks = nn.Linear(1152, 63)
        self.world_landmarks = nn.Linear(1152, 63)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        pooled = self.head_block(self.trunk(x)[-1]).mean(dim=(2, 3))
        b = x.shape[0]
        return {
            "landmarks": self.landmarks(pooled).view(b, 21, 3),
            "presence": torch.sigmoid(self.presence(pooled))[:, 0],
            "handedness": torch.sigmoid(self.handedness(pooled))[:, 0],
            "world_landmarks": self.world_landmarks(pooled).view(b, 21, 3),
        }
