"""Turning what the user passes (a path, a PIL image, a numpy array) into an (H, W, 3) uint8
RGB array, with EXIF orientation applied; every failure is an ``ImageError`` with a clear
message. A file over ``LARGE_IMAGE_PIXELS`` is opened by :func:`open_image` as a
:class:`LargeImage` instead: a reduced preview for the detector (a JPEG decoded at 1/2..1/8 of
its size with PIL's ``draft``), and the pixels around each crop decoded when the crop is cut, so
a folder of 100 MP photos never holds one decoded whole (docs/performance.md, "Very large
photos")."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

ImageInput = str | Path | np.ndarray | Any  # Any: a PIL.Image.Image


# File name endings taken as images when a folder is given (tools that scan folders share this).
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# How far outside [0, 1] a float image may stray (resampling overshoot) before it is refused.
FLOAT_SLACK = 1.0 / 255.0
# A file with more pixels than this is opened lazily by ``open_image`` (a ``LargeImage``): a 100 MP
# photo is 300 MB decoded, and a batch of them would not fit in memory. Ordinary photos (a 12 MP
# phone photo is 4032 x 3024) stay below it and are decoded whole, as ``load_image`` does.
LARGE_IMAGE_PIXELS = 4096 * 4096
# A LargeImage's preview (what the hand detector sees; overlays are drawn on it) has at most this
# many pixels. MediaPipe finds palms on a 192 x 192 view of the whole image and places landmarks
# on a 224 x 224 view of each hand, so more would not help it.
PREVIEW_PIXELS = 2048 * 1536


class ImageError(ValueError):
    """An input that is not a usable image (missing, corrupt, wrong shape or type)."""


def _from_pil(img: Any) -> np.ndarray:
    from PIL import ImageOps

    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - a broken EXIF block should not lose the image itself
        pass
    return _pil_to_rgb(img)


def _pil_to_rgb(img: Any) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a PIL image in any mode, as it is stored (no EXIF orientation)."""
    from PIL import Image

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
    from PIL import Image

    if isinstance(image, (str, Path)):
        return _read_file(Path(image), _decode_whole)
    if isinstance(image, Image.Image):
        try:
            return _from_pil(image)
        except (OSError, ValueError) as exc:
            raise ImageError(f"cannot convert PIL image: {exc}") from None
    if isinstance(image, np.ndarray):
        return _from_array(image)
    raise ImageError(f"expected a path, a PIL image or a numpy array, got {type(image).__name__}")


_T = TypeVar("_T")


def _read_file(path: Path, read: Callable[[Any], _T]) -> _T:
    """``read(the opened PIL image)``, with every failure turned into an ImageError."""
    from PIL import Image, UnidentifiedImageError

    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a directory, not an image")
    if not path.is_file():  # a FIFO or a device would block or never end
        raise ImageError(f"{path}: not a regular file")
    try:
        with Image.open(path) as img:
            return read(img)
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file (or a format Pillow cannot read)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        # DecompressionBombError: PIL refuses images of over 2 x Image.MAX_IMAGE_PIXELS pixels
        # (179 MP) before decoding them; it is not an OSError.
        raise ImageError(f"{path}: cannot read image: {exc}") from None


def _decode_whole(img: Any) -> np.ndarray:
    img.load()
    return _from_pil(img)


def _orientation(img: Any) -> int:
    """The EXIF orientation (1-8) that ``ImageOps.exif_transpose`` applies; 1 if none or broken."""
    try:
        value = int(img.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - a broken EXIF block should not lose the image itself
        return 1
    return value if 1 <= value <= 8 else 1


def _transpose_method(orientation: int) -> Any:
    """PIL's transpose for an EXIF orientation, as ``ImageOps.exif_transpose`` picks it."""
    from PIL import Image

    t = Image.Transpose
    methods = {
        2: t.FLIP_LEFT_RIGHT,
        3: t.ROTATE_180,
        4: t.FLIP_TOP_BOTTOM,
        5: t.TRANSPOSE,
        6: t.ROTATE_270,
        7: t.TRANSVERSE,
        8: t.ROTATE_90,
    }
    return methods.get(orientation)


def _orientation_affine(orientation: int, raw_width: int, raw_height: int) -> np.ndarray:
    """3x3 affine from pixel centres of the image as stored (``raw_width`` x ``raw_height``) to
    pixel centres of the image as its EXIF ``orientation`` shows it (``_transpose_method``)."""
    w, h = float(raw_width), float(raw_height)
    # Where PIL's transpose moves a point, in pixel-edge coordinates (0 .. w, 0 .. h).
    edges = {
        1: ((1, 0, 0), (0, 1, 0)),
        2: ((-1, 0, w), (0, 1, 0)),
        3: ((-1, 0, w), (0, -1, h)),
        4: ((1, 0, 0), (0, -1, h)),
        5: ((0, 1, 0), (1, 0, 0)),
        6: ((0, -1, h), (1, 0, 0)),
        7: ((0, -1, h), (-1, 0, w)),
        8: ((0, 1, 0), (-1, 0, w)),
    }[orientation]
    edge = np.array([*edges, (0, 0, 1)], dtype=np.float64)
    half = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])  # centres -> edges
    out: np.ndarray = np.linalg.inv(half) @ edge @ half
    return out


@dataclass(frozen=True, eq=False)
class LargeImage:
    """An image file too large to keep decoded (over ``LARGE_IMAGE_PIXELS``), as
    :func:`open_image` opens it: its size, a reduced ``preview``, and parts of the full image
    decoded on demand (:meth:`regions`). Coordinates are those of the whole image as shown (EXIF
    orientation applied), pixel centres as in :mod:`dfl_infer.crop`.

    ``path``: the file. ``width``, ``height``: its full size as shown. ``orientation``: the file's
    EXIF orientation (1-8). ``preview``: (h, w, 3) uint8 RGB, the whole image reduced to at most
    ``PREVIEW_PIXELS`` pixels (each axis scaled exactly by ``preview_scale``)."""

    path: Path
    width: int
    height: int
    orientation: int
    preview: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        """(H, W, 3) of the full image, as an array of it would have."""
        return self.height, self.width, 3

    @property
    def preview_scale(self) -> tuple[float, float]:
        """Preview pixels per full-image pixel, along x and y."""
        return self.preview.shape[1] / self.width, self.preview.shape[0] / self.height

    def _from_preview(self) -> np.ndarray:
        """3x3 affine: preview pixel centres -> full-image pixel centres."""
        sx, sy = (1.0 / s for s in self.preview_scale)
        return np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]])

    def to_full(self, points: np.ndarray) -> np.ndarray:
        """Preview pixels (..., 2) -> full-image pixels (..., 2)."""
        m = self._from_preview()
        out: np.ndarray = np.asarray(points, dtype=np.float64) @ m[:2, :2].T + m[:2, 2]
        return out

    def to_preview(self, points: np.ndarray) -> np.ndarray:
        """Full-image pixels (..., 2) -> preview pixels (..., 2)."""
        m = np.linalg.inv(self._from_preview())
        out: np.ndarray = np.asarray(points, dtype=np.float64) @ m[:2, :2].T + m[:2, 2]
        return out

    def regions(
        self, boxes: Sequence[Sequence[float] | np.ndarray], resolution: float
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per box (x0, y0, x1, y1) of full-image pixels: ``(pixels, affine)``, an (h, w, 3)
        uint8 RGB array that holds the box (plus two pixels; clipped to the image) at
        ``resolution`` or more of its pixels per full-image pixel, and the 2x3 affine from its
        pixel centres to full-image pixel centres. The preview serves when it is fine enough;
        else the file is decoded once for all the boxes, as coarsely as allowed: a JPEG at 1/2,
        1/4 or 1/8 of its size (at most twice ``resolution``), other formats whole. Only the
        boxes' pixels are kept."""
        if min(self.preview_scale) >= resolution:
            return [(self.preview, self._from_preview()[:2])] * len(boxes)
        return _read_file(self.path, lambda img: self._decode_regions(img, boxes, resolution))

    def _decode_regions(
        self, img: Any, boxes: Sequence[Sequence[float] | np.ndarray], resolution: float
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        raw_w, raw_h = img.size
        oriented = (raw_h, raw_w) if self.orientation >= 5 else (raw_w, raw_h)
        if oriented != (self.width, self.height):
            raise OSError(f"the file changed since it was opened ({raw_w} x {raw_h} pixels now)")
        step = 1.0  # full-image pixels per decoded pixel
        for s in (8, 4, 2):
            if 1.0 / s >= resolution and min(raw_w, raw_h) >= s:
                drafted = img.draft(img.mode, (raw_w // s, raw_h // s))  # None: not a JPEG
                if drafted is not None:
                    step = raw_w / drafted[1][2]
                break
        img.load()
        # Decoded pixel centres -> full-image pixel centres as shown.
        to_full = _orientation_affine(self.orientation, raw_w, raw_h) @ np.array(
            [[step, 0, 0.5 * step - 0.5], [0, step, 0.5 * step - 0.5], [0, 0, 1]]
        )
        to_decoded = np.linalg.inv(to_full)
        dw, dh = img.size
        out = []
        for box in boxes:
            x0, y0, x1, y1 = (float(v) for v in box)
            corners = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]]) @ to_decoded.T
            # Two pixels more on each side: bilinear sampling reads the next pixel too.
            lo = np.floor(corners[:, :2].min(axis=0)).astype(int) - 2
            hi = np.ceil(corners[:, :2].max(axis=0)).astype(int) + 3
            # Clipped to the image, never empty: a box outside it still gets the edge pixels
            # that a warp blends its border with.
            left, top = min(max(int(lo[0]), 0), dw - 1), min(max(int(lo[1]), 0), dh - 1)
            right, bottom = max(min(int(hi[0]), dw), left + 1), max(min(int(hi[1]), dh), top + 1)
            pixels = _pil_to_rgb(img.crop((left, top, right, bottom)))
            shift = np.array([[1, 0, left], [0, 1, top], [0, 0, 1]], dtype=np.float64)
            out.append((pixels, (to_full @ shift)[:2]))
        return out


def _open_large(path: Path, img: Any, preview_pixels: int) -> LargeImage:
    """A LargeImage of the opened file ``img``: its preview decoded reduced (a JPEG at 1/2, 1/4
    or 1/8 of its size where that is still at least the preview's), then resized exactly."""
    from PIL import Image

    raw_w, raw_h = img.size
    r = min(1.0, math.sqrt(preview_pixels / (raw_w * raw_h)))
    size = max(1, round(raw_w * r)), max(1, round(raw_h * r))
    drafted = img.draft(img.mode, size)  # None: not a JPEG, decoded whole
    source = drafted[1] if drafted is not None else (0, 0, raw_w, raw_h)
    img.load()
    orientation = _orientation(img)
    small = img if img.mode in ("RGB", "L") else Image.fromarray(_pil_to_rgb(img))
    if small.size != size or tuple(source) != (0, 0, *small.size):
        # ``box``: the decoded pixels that cover the whole image (a JPEG's last reduced pixel may
        # cover less than its share), so that each axis of the preview scales exactly.
        small = small.resize(size, Image.Resampling.BICUBIC, box=source)
    method = _transpose_method(orientation)
    if method is not None:
        small = small.transpose(method)
    w, h = (raw_h, raw_w) if orientation >= 5 else (raw_w, raw_h)
    return LargeImage(path, w, h, orientation, _pil_to_rgb(small))


def open_image(
    image: ImageInput, *, max_pixels: int | None = None, preview_pixels: int | None = None
) -> np.ndarray | LargeImage:
    """:func:`load_image`, except that an image file of more than ``max_pixels`` pixels (default
    ``LARGE_IMAGE_PIXELS``) is opened as a :class:`LargeImage` instead of decoded whole: a
    preview of at most ``preview_pixels`` pixels (default ``PREVIEW_PIXELS``) for the detector,
    and the network's crops cut later from reduced decodes (``LargeImage.regions``). Arrays
    and PIL images are already in memory: they go to :func:`load_image`; a LargeImage is returned
    as it is."""
    if isinstance(image, LargeImage):
        return image
    if not isinstance(image, (str, Path)):
        return load_image(image)
    limit = LARGE_IMAGE_PIXELS if max_pixels is None else max_pixels
    budget = PREVIEW_PIXELS if preview_pixels is None else preview_pixels
    path = Path(image)

    def read(img: Any) -> np.ndarray | LargeImage:
        if img.width * img.height <= limit:
            return _decode_whole(img)
        return _open_large(path, img, budget)

    return _read_file(path, read)
