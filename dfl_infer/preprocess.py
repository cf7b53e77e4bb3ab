"""The network's input contract: square crops cut from images into one uint8 batch buffer, and
the normalisation with the config's mean and std. The predictor, both backends, training and
evaluation all prepare the network's input here, so the contract is written once.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch

from dfl_infer.crop import Crop
from dfl_infer.model.config import DFLConfig


def crop_batch(images: Sequence[np.ndarray], crops: Sequence[Crop]) -> np.ndarray:
    """(B, S, S, 3) uint8 RGB: ``crops[k]`` cut out of ``images[k]`` ((H, W, 3) uint8 RGB), each
    warped straight into its slot of one buffer. All crops must have the same size S."""
    if len(images) != len(crops):
        raise ValueError(f"{len(images)} images for {len(crops)} crops")
    sizes = {crop.size for crop in crops}
    if len(sizes) > 1:
        raise ValueError(f"crops of different sizes {sorted(sizes)} cannot share a batch")
    size = sizes.pop() if sizes else 0
    out = np.empty((len(crops), size, size, 3), dtype=np.uint8)
    for k, (image, crop) in enumerate(zip(images, crops)):
        crop.warp(image, out=out[k])
    return out


@lru_cache(maxsize=16)
def _stats(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=device).view(1, 3, 1, 1)
    # uint8 input: the constants are scaled instead of the pixels (one multiply fewer per pixel).
    return (m * scale, s * scale) if scale != 1.0 else (m, s)


def normalize(images: torch.Tensor, config: DFLConfig, channels_last: bool = False) -> torch.Tensor:
    """The network's input (B, 3, S, S) float32 ``(rgb - mean) / std`` from RGB crops on any
    device: uint8 (B, S, S, 3) as :func:`crop_batch` cuts them (0-255), or float (B, 3, S, S) in
    [0, 1] as the training data gives them. ``channels_last``: NHWC memory layout (faster
    convolutions; the inference default, and training's on CUDA)."""
    if images.dtype == torch.uint8:
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"uint8 crops must be (B, S, S, 3), got {tuple(images.shape)}")
        x = images.permute(0, 3, 1, 2).float()
        mean, std = _stats(config.mean, config.std, images.device, 255.0)
    else:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"float crops must be (B, 3, S, S), got {tuple(images.shape)}")
        x = images.float()
        mean, std = _stats(config.mean, config.std, images.device, 1.0)
    x = (x - mean) / std
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
