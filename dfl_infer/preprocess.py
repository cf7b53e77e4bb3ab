"""The network's input contract: square crops cut from images into one uint8 batch buffer, and
the normalisation with the config's mean and std. The predictor, both backends, training and
evaluation all prepare the network's input here, so the contract is written once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from dfl_infer.crop import Crop, points_box
from dfl_infer.image import LargeImage
from dfl_infer.model.config import DFLConfig

if TYPE_CHECKING:  # torch is imported by the functions that take tensors (not on the ONNX path)
    import torch


def crop_batch(images: Sequence[np.ndarray | LargeImage], crops: Sequence[Crop]) -> np.ndarray:
    """(B, S, S, 3) uint8 RGB: ``crops[k]`` cut out of ``images[k]`` ((H, W, 3) uint8 RGB, or a
    ``LargeImage``, whose crops come from one reduced decode: :func:`_crop_large`), each warped
    straight into its slot of one buffer. All crops must have the same size S."""
    if len(images) != len(crops):
        raise ValueError(f"{len(images)} images for {len(crops)} crops")
    sizes = {crop.size for crop in crops}
    if len(sizes) > 1:
        raise ValueError(f"crops of different sizes {sorted(sizes)} cannot share a batch")
    size = sizes.pop() if sizes else 0
    out = np.empty((len(crops), size, size, 3), dtype=np.uint8)
    large: dict[int, list[int]] = {}  # id of a LargeImage -> its crops' slots
    for k, (image, crop) in enumerate(zip(images, crops)):
        if isinstance(image, LargeImage):
            large.setdefault(id(image), []).append(k)
        else:
            crop.warp(image, out=out[k])
    for slots in large.values():
        image = images[slots[0]]
        assert isinstance(image, LargeImage)
        _crop_large(image, [crops[k] for k in slots], [out[k] for k in slots])
    return out


def _crop_large(image: LargeImage, crops: Sequence[Crop], outs: Sequence[np.ndarray]) -> None:
    """Cut ``crops`` out of a LargeImage into ``outs``: each from the pixels around it
    (``LargeImage.regions``: its preview, or one decode at no more than twice the finest crop's
    resolution), warped by the crop's affine composed with the pixels' own. At full resolution
    this is the same bilinear warp as from the whole decoded image."""
    last = crops[0].size - 1
    corners = np.array([[0, 0], [last, 0], [0, last], [last, last]], dtype=np.float64)
    boxes = [points_box(crop.to_image(corners)) for crop in crops]
    pieces = image.regions(boxes, max(crop.scale for crop in crops))
    for crop, (pixels, to_full), out in zip(crops, pieces, outs):
        lin = crop.matrix[:, :2]
        matrix = np.concatenate(
            [lin @ to_full[:, :2], (lin @ to_full[:, 2] + crop.matrix[:, 2])[:, None]], axis=1
        )
        replace(crop, matrix=matrix).warp(pixels, out=out)


@lru_cache(maxsize=16)
def _stats(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=device).view(1, 3, 1, 1)
    # uint8 input: the constants are scaled instead of the pixels (one multiply fewer per pixel).
    return (m * scale, s * scale) if scale != 1.0 else (m, s)


def normalize(images: torch.Tensor, config: DFLConfig, channels_last: bool = False) -> torch.Tensor:
    """The network's input (B, 3, S, S) float32 ``(rgb - mean) / std`` from RGB crops on any
    device: uint8 (B, S, S, 3) as :func:`crop_batch` cuts them (0-255), or float (B, 3, S, S) in
    [0, 1] as the training data gives them. ``channels_last``: NHWC memory layout (faster
    convolutions; the inference default, and training's on CUDA)."""
    import torch

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


def normalize_numpy(crops: np.ndarray, config: DFLConfig) -> np.ndarray:
    """:func:`normalize` for uint8 (B, S, S, 3) crops in numpy, without PyTorch: (B, 3, S, S)
    float32 ``(rgb - mean) / std``, contiguous (the onnxruntime backend's input)."""
    if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[-1] != 3:
        raise ValueError(f"crops must be uint8 (B, S, S, 3), got {crops.dtype} {crops.shape}")
    scale = np.float32(1.0 / 255.0)
    mean = np.asarray(config.mean, dtype=np.float32).reshape(1, 3, 1, 1)
    inv_std = (1.0 / np.asarray(config.std, dtype=np.float32)).reshape(1, 3, 1, 1)
    x = crops.transpose(0, 3, 1, 2).astype(np.float32)
    x *= scale
    x -= mean
    x *= inv_std
    return np.ascontiguousarray(x)
