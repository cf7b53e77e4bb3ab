"""Turning what the user passes (a path, a PIL image, a numpy array) into an (H, W, 3) uint8
RGB array, with EXIF orientation applied; every failure is an ``ImageError`` with a clear
message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

ImageInput = str | Path | np.ndarray | Any  # Any: a PIL.Image.Image


# File name endings taken as images when a folder is given (tools that scan folders share this).
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# How far outside [0, 1] a float image may stray (resampling overshoot) before it is refused.
FLOAT_SLACK = 1.0 / 255.0


class ImageError(ValueError):
    """An input that is not a usable image (missing, corrupt, wrong shape or type)."""


def _from_pil(img: Any) -> np.ndarray:
    from PIL import Image, ImageOps

    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - a broken EXIF block should not lose the image itself
        pass
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit files (PIL reads some PNGs as 32-bit "I"): scaled from 0..65535, whatever the
        # largest value, so a dark 16-bit photo is not taken for an 8-bit one.
        return _from_array(np.clip(np.asarray(img), 0, 65535).astype(np.uint16))
    if mode == "F":
        return _from_array(np.asarray(img))
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        # Transparent pixels become white, as image viewers show them.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


def _from_array(arr: np.ndarray) -> np.ndarray:
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ImageError(f"expected an H x W, H x W x 3 or H x W x 4 array, got shape {a.shape}")
    if a.shape[2] == 4:
        # Composite over white, in the array's own value range.
        full = 1.0 if a.dtype.kind == "f" else (65535.0 if a.dtype == np.uint16 else 255.0)
        alpha = a[:, :, 3:4].astype(np.float64) / full
        a = a[:, :, :3] * alpha + full * (1 - alpha)
        a = a if arr.dtype.kind == "f" else a.round().astype(arr.dtype)
    if min(a.shape[:2]) < 1:
        raise ImageError(f"image is empty: shape {a.shape}")
    if a.dtype == np.uint8:
        out = a
    elif a.dtype == np.uint16:
        out = (a.astype(np.float64) / 257.0).round()
    elif a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise ImageError("float image contains NaN or infinite values")
        # Floats are [0, 1] intensities (the usual convention). Values outside, beyond a rounding
        # slack, are refused: an image in 0..255 clipped to [0, 1] would be silently white.
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if lo < -FLOAT_SLACK or hi > 1.0 + FLOAT_SLACK:
            raise ImageError(
                f"float image values must lie in [0, 1], got {lo:g}..{hi:g}; for values in "
                "0..255 pass a uint8 array (or divide by 255)"
            )
        out = (np.clip(a, 0.0, 1.0) * 255.0).round()
    elif a.dtype.kind in "iu":
        # Other integers: 0..255 as 8-bit; up to 65535 as 16-bit (scaled, never clipped).
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if lo < 0 or hi > 65535:
            raise ImageError(
                f"integer image values must lie in 0..255 (8-bit) or 0..65535 (16-bit), got "
                f"{lo:g}..{hi:g}"
            )
        out = (a.astype(np.float64) * (255.0 / 65535.0 if hi > 255 else 1.0)).round()
    elif a.dtype == bool:
        out = a.astype(np.float64) * 255
    else:
        raise ImageError(f"unsupported image dtype {a.dtype}")
    return np.ascontiguousarray(out.astype(np.uint8))


def load_image(image: ImageInput) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a path, a PIL image or a numpy array.

    Numpy arrays are taken as RGB(A) or grayscale: uint8 as is, uint16 scaled by 1/257, floats as
    [0, 1] (values outside are an ImageError, not clipped), other integers as 0..255, or 0..65535
    when larger values occur. Paths and PIL images get their EXIF orientation applied; 16-bit,
    grayscale, palette and RGBA images are converted (transparency composited over white).
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.exists():
            raise ImageError(f"{path}: no such file")
        if path.is_dir():
            raise ImageError(f"{path}: is a directory, not an image")
        if not path.is_file():  # a FIFO or a device would block or never end
            raise ImageError(f"{path}: not a regular file")
        try:
            with Image.open(path) as img:
                img.load()
                return _from_pil(img)
        except UnidentifiedImageError:
            raise ImageError(
                f"{path}: not an image file (or a format Pillow cannot read)"
            ) from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageError(f"{path}: cannot read image: {exc}") from None
    if isinstance(image, Image.Image):
        try:
            return _from_pil(image)
        except (OSError, ValueError) as exc:
            raise ImageError(f"cannot convert PIL image: {exc}") from None
    if isinstance(image, np.ndarray):
        return _from_array(image)
    raise ImageError(f"expected a path, a PIL image or a numpy array, got {type(image).__name__}")
