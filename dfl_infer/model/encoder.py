"""Feature-extraction encoder (paper section 3.2): ResNet + FPN, part segmentation, and the
appearance / position features of every scale.

Shapes (B = batch, S = input size): FPN levels at strides 32, 16, 8, 4 of the input, coarsest
first, as the decoder consumes them. Appearance features are concat(F_n, softmax(S_n)) with
C_F + C_S channels; position features are a 2D sinusoidal encoding of each pixel's normalized
coordinates mapped to C_P channels by a learned 1x1 projection shared by all scales.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dfl_infer.model.backbone import RESNET_LAYERS, FeaturePyramid, ResNet
from dfl_infer.model.config import DFLConfig
from dfl_infer.model.mediapipe_hand import MediaPipeHandTrunk
from dfl_infer.model.outputs import EncoderOutput

# Backbones besides the ResNets: MediaPipe's hand-landmark trunk (``mediapipe_hand.py``).
BACKBONES = (*RESNET_LAYERS, "mediapipe_hand")

# Frequencies per axis of the sinusoidal encoding; 2 * 2 * _NUM_FREQS channels before projection.
_NUM_FREQS = 16


class SinusoidalPosition(nn.Module):
    """Position features: sin/cos of normalized pixel-centre coordinates -> C_P (1x1 conv)."""

    freqs: torch.Tensor

    def __init__(self, out_channels: int, with_xy: bool = False) -> None:
        super().__init__()
        self.with_xy = with_xy
        # Geometric frequencies from 1 to 32 cycles across the crop: fine enough to tell apart
        # neighbouring pixels of the stride-4 map, coarse enough to stay smooth.
        freqs = torch.pow(2.0, torch.linspace(0.0, 5.0, _NUM_FREQS)) * math.pi
        self.register_buffer("freqs", freqs, persistent=False)
        self.proj = nn.Conv2d(4 * _NUM_FREQS + 2 * with_xy, out_channels, kernel_size=1)

    def encoding(
        self, height: int, width: int, device: torch.device, dtype: torch.dtype
    ) -> torch.Tensor:
        """(1, 4 * _NUM_FREQS [+ 2], H, W) raw encoding; coordinates of pixel centres in (0, 1),
        followed by x - 0.5 and y - 0.5 themselves when ``with_xy``."""
        ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height
        xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width
        fx = xs[:, None] * self.freqs[None, :]  # (W, F)
        fy = ys[:, None] * self.freqs[None, :]  # (H, F)
        ex = torch.cat([fx.sin(), fx.cos()], dim=1).T[:, None, :].expand(-1, height, -1)
        ey = torch.cat([fy.sin(), fy.cos()], dim=1).T[:, :, None].expand(-1, -1, width)
        parts = [ex, ey]
        if self.with_xy:
            parts.append((xs - 0.5)[None, None, :].expand(1, height, -1))
            parts.append((ys - 0.5)[None, :, None].expand(1, -1, width))
        return torch.cat(parts, dim=0)[None].to(dtype)

    def forward(self, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
        enc = self.encoding(height, width, like.device, self.proj.weight.dtype)
        out: torch.Tensor = self.proj(enc)  # (1, C_P, H, W); broadcast over the batch by the caller
        return out


class Encoder(nn.Module):
    """Backbone (ResNet, or MediaPipe's hand trunk) + FPN with a part-segmentation head; returns
    per-scale appearance/position features."""

    def __init__(self, config: DFLConfig) -> None:
        super().__init__()
        if config.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {config.backbone!r}")
        # Random initial weights; trained ones come from safetensors (pretrained starting points:
        # dfl_infer.training.init_backbone). resnet10 (one block per stage) is the tiny preset's.
        self.trunk: MediaPipeHandTrunk | None = None
        if config.backbone == "mediapipe_hand":
            self.trunk = MediaPipeHandTrunk()
            out_channels = self.trunk.out_channels
        else:
            resnet = ResNet(config.backbone)
            self.stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool)
            self.layers = nn.ModuleList(
                [resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4]
            )
            out_channels = resnet.out_channels
        c_f, c_s = config.fpn_channels, config.num_seg_classes
        self.fpn = FeaturePyramid(out_channels, c_f)
        self.seg_head = nn.Sequential(
            nn.Conv2d(c_f, config.seg_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(config.seg_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(config.seg_channels, config.seg_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(config.seg_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(config.seg_channels, c_s, 1),
        )
        self.position = SinusoidalPosition(config.pos_channels, config.position_xy)
        self.appearance_channels = c_f + c_s

    def backbone_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The backbone's feature maps at strides 4, 8, 16, 32 (finest first)."""
        if self.trunk is not None:
            trunk_feats: list[torch.Tensor] = self.trunk(images)
            return trunk_feats
        x = self.stem(images)
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats

    def forward(self, images: torch.Tensor) -> EncoderOutput:
        """images (B, 3, S, S) normalized -> per-level features (see :class:`EncoderOutput`)."""
        pyramid = self.fpn(self.backbone_features(images))  # strides 4, 8, 16, 32
        seg_logits = self.seg_head(pyramid[0])
        seg_prob = seg_logits.float().softmax(dim=1).to(pyramid[0].dtype)
        appearance, position = [], []
        for level in reversed(pyramid):  # coarsest first
            h, w = level.shape[-2:]
            # Segmentation is predicted once at the finest scale and average-pooled down. Every
            # level divides the finest one exactly (input_size is a multiple of 32), so a plain
            # average pool with kernel = stride does it, and exports to ONNX with constant sizes.
            k = seg_prob.shape[-1] // w
            prob = seg_prob if k == 1 else F.avg_pool2d(seg_prob, kernel_size=k, stride=k)
            appearance.append(torch.cat([level, prob], dim=1))
            position.append(self.position(h, w, level))
        return EncoderOutput(appearance, position, seg_logits)
