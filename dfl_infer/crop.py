"""Box -> square crop: the affine map from image pixels to crop pixels, its exact inverse, and
the grouping of detected hands into crops.

Pixel convention (OpenCV's): the point (0, 0) is the centre of the top-left pixel, so an image of
width W spans x in [-0.5, W - 0.5]. Boxes are ``(x0, y0, x1, y1)`` in the same continuous
coordinates. A crop of ``size`` pixels covers its square box exactly: the box's left edge maps to
-0.5 and its right edge to ``size - 0.5``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dfl_infer.joints import WRIST

# The joint whose direction from the wrist is a hand's "up" (the middle finger's MCP, index 11 of
# InterHand's per-hand order), as MediaPipe's landmark model turns its crops.
UP_JOINT = 11
# Two hands in one crop are turned by their mean direction only while the two agree this well
# (length of the mean of the two unit vectors: 0.5 = 120 degrees apart); otherwise not at all.
PAIR_AGREEMENT = 0.5
# A second pass whose crop overlaps the first one's by at least this IoU is skipped: it would
# see (nearly) the same pixels again (the predictor's re-crop, hand_pass). A lone hand whose
# network output has both slots on that hand (presence for both) re-crops to exactly its first
# crop.
SAME_CROP_IOU = 0.9


def square_box(box: Sequence[float] | np.ndarray, scale: float = 1.25) -> np.ndarray:
    """Square box (xyxy) with the centre of ``box`` and a side of ``scale`` x its longer side."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"box must have x1 > x0 and y1 > y0, got {tuple(box)}")
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half = max(x1 - x0, y1 - y0) * scale / 2
    return np.array([cx - half, cy - half, cx + half, cy + half], dtype=np.float64)


def union_box(boxes: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Smallest box (xyxy) holding every box of ``boxes`` (N, 4)."""
    arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(arr) == 0:
        raise ValueError("union_box needs at least one box")
    return np.array([arr[:, 0].min(), arr[:, 1].min(), arr[:, 2].max(), arr[:, 3].max()])


def points_box(points: np.ndarray) -> np.ndarray:
    """Tight box (xyxy) around 2D points (N, 2)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return np.array([*pts.min(axis=0), *pts.max(axis=0)])


@dataclass(frozen=True)
class Crop:
    """A square crop of an image: ``matrix`` maps image pixels to crop pixels (2x3 affine).

    ``box`` is the square region in image pixels (before any rotation), ``size`` the crop's side
    in pixels, ``rotation`` the in-plane rotation in degrees (counter-clockwise in the crop:
    training augmentation, and the upright crops of models with ``DFLConfig.upright``) and
    ``flip`` whether the crop is mirrored.
    """

    box: np.ndarray
    size: int
    matrix: np.ndarray
    rotation: float = 0.0
    flip: bool = False

    @property
    def inverse(self) -> np.ndarray:
        """The 2x3 affine from crop pixels back to image pixels (exact inverse of ``matrix``)."""
        return invert_affine(self.matrix)

    @property
    def scale(self) -> float:
        """Crop pixels per image pixel."""
        return float(self.size / (self.box[2] - self.box[0]))

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """Image pixels (..., 2) -> crop pixels (..., 2)."""
        return apply_affine(self.matrix, points)

    def to_image(self, points: np.ndarray) -> np.ndarray:
        """Crop pixels (..., 2) -> image pixels (..., 2)."""
        return apply_affine(self.inverse, points)

    def warp(
        self, image: np.ndarray, border_value: int = 0, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Cut this crop out of ``image`` (H, W, C) uint8 or float; returns (size, size, C),
        written into ``out`` (a C-contiguous array of that shape and dtype) when given."""
        import cv2

        if out is not None and (
            out.shape != (self.size, self.size, *image.shape[2:])
            or out.dtype != image.dtype
            or not out.flags.c_contiguous
        ):
            raise ValueError(
                f"out must be a contiguous {image.dtype} array of shape "
                f"{(self.size, self.size, *image.shape[2:])}, got {out.dtype} {out.shape}"
            )
        # With a matching ``dst`` OpenCV writes into it and returns it.
        warped: np.ndarray = cv2.warpAffine(
            image,
            self.matrix.astype(np.float64),
            (self.size, self.size),
            dst=out,
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(border_value,) * 4,
        )
        return warped


def make_crop(
    box: Sequence[float] | np.ndarray,
    size: int = 256,
    scale: float = 1.25,
    rotation: float = 0.0,
    flip: bool = False,
) -> Crop:
    """Crop of ``size`` x ``size`` pixels around ``box`` (xyxy): squared, then widened by ``scale``.

    ``rotation`` (degrees) rotates the content counter-clockwise about the box centre and ``flip``
    mirrors it horizontally, both applied in crop space so the inverse stays exact.
    """
    sq = square_box(box, scale)
    side = sq[2] - sq[0]
    s = size / side
    cx, cy = (sq[0] + sq[2]) / 2, (sq[1] + sq[3]) / 2
    c = (size - 1) / 2
    a = math.radians(rotation)
    # Image -> centred & scaled -> rotated (counter-clockwise on screen, y points down) -> flipped.
    rot = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    lin = rot * s
    if flip:
        lin = np.diag([-1.0, 1.0]) @ lin
    t = np.array([c, c]) - lin @ np.array([cx, cy])
    matrix = np.concatenate([lin, t[:, None]], axis=1)
    return Crop(box=sq, size=size, matrix=matrix, rotation=rotation, flip=flip)


def upright_rotation(hands: Sequence[np.ndarray], agreement: float = PAIR_AGREEMENT) -> float:
    """The ``rotation`` (degrees, for :func:`make_crop`) that turns the hands' wrist-to-middle-MCP
    direction straight up in the crop. ``hands``: (21, 2) image pixels per hand, InterHand
    per-hand order. Several hands: their mean unit direction, or 0 when its length is below
    ``agreement`` (hands pointing different ways: no single upright); 0 for no hands."""
    dirs = []
    for joints in hands:
        v = np.asarray(joints, dtype=np.float64)[UP_JOINT] - np.asarray(joints)[WRIST]
        norm = float(np.hypot(*v))
        if norm > 0 and np.isfinite(norm):
            dirs.append(v / norm)
    if not dirs:
        return 0.0
    mean = np.mean(dirs, axis=0)
    if float(np.hypot(*mean)) < (agreement if len(dirs) > 1 else 1e-9):
        return 0.0
    # make_crop maps a direction at angle phi (image, y down) to phi - rotation: up is -90.
    angle = math.degrees(math.atan2(mean[1], mean[0])) + 90.0
    return float((angle + 180.0) % 360.0 - 180.0)


def crop_around(
    points: np.ndarray, size: int = 256, scale: float = 1.25, rotation: float = 0.0
) -> Crop:
    """The crop that holds ``points`` (N, 2 image pixels) as :func:`make_crop` holds a box, but
    turned by ``rotation``: the tight box is taken in the turned frame, so a turned hand fills
    the crop as an upright one does."""
    return make_crop(turned_box(points, rotation), size, scale, rotation=rotation)


def turned_box(points: np.ndarray, rotation: float) -> np.ndarray:
    """The square box (xyxy, image pixels) that :func:`make_crop` turned by ``rotation`` needs
    to hold ``points`` (N, 2) as tightly as an unturned crop holds their box: centre and side of
    their tight box in the turned frame."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    a = math.radians(rotation)
    rot = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    box = points_box(pts @ rot.T)
    centre = rot.T @ ((box[:2] + box[2:]) / 2)
    half = max(box[2] - box[0], box[3] - box[1]) / 2
    return np.array([centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half])


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine map."""
    m = np.asarray(matrix, dtype=np.float64)
    lin_inv = np.linalg.inv(m[:, :2])
    return np.concatenate([lin_inv, (-lin_inv @ m[:, 2])[:, None]], axis=1)


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine to points (..., 2)."""
    m = np.asarray(matrix, dtype=np.float64)
    pts = np.asarray(points, dtype=np.float64)
    out: np.ndarray = pts @ m[:, :2].T + m[:, 2]
    return out


def boxes_touch(a: np.ndarray, b: np.ndarray, margin: float = 0.0) -> bool:
    """Whether boxes ``a`` and ``b`` (xyxy) overlap once each is grown by ``margin`` x its size."""

    def grow(box: np.ndarray) -> np.ndarray:
        w, h = box[2] - box[0], box[3] - box[1]
        return np.array(
            [box[0] - margin * w, box[1] - margin * h, box[2] + margin * w, box[3] + margin * h]
        )

    ga, gb = grow(np.asarray(a, float)), grow(np.asarray(b, float))
    return bool(ga[0] <= gb[2] and gb[0] <= ga[2] and ga[1] <= gb[3] and gb[1] <= ga[3])


def group_hands(
    boxes: Sequence[Sequence[float]] | np.ndarray,
    handedness: Sequence[str] | None = None,
    margin: float = 0.1,
) -> list[list[int]]:
    """Group hand boxes into crops of one or two hands.

    Two hands share a crop when their boxes touch (after growing each by ``margin``) and, when
    ``handedness`` is given, they are not of the same side (two right hands belong to two people).
    Pairs are formed greedily from the closest touching pair; every other hand is cropped alone, so
    hands far apart are never shrunk inside one huge union box. Returns lists of indices.
    """
    arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    n = len(arr)
    centres = np.stack([(arr[:, 0] + arr[:, 2]) / 2, (arr[:, 1] + arr[:, 3]) / 2], axis=1)
    sizes = np.maximum(arr[:, 2] - arr[:, 0], arr[:, 3] - arr[:, 1])
    candidates = []
    for i in range(n):
        for j in range(i + 1, n):
            if handedness is not None and handedness[i] == handedness[j]:
                continue
            if boxes_touch(arr[i], arr[j], margin):
                dist = float(np.linalg.norm(centres[i] - centres[j]) / max(sizes[i], sizes[j]))
                candidates.append((dist, i, j))
    used: set[int] = set()
    groups: list[list[int]] = []
    for _, i, j in sorted(candidates):
        if i in used or j in used:
            continue
        used.update((i, j))
        groups.append([i, j])
    groups.extend([i] for i in range(n) if i not in used)
    return sorted(groups, key=lambda g: min(g))


def box_intersection(a: np.ndarray, b: np.ndarray) -> float:
    """Area shared by two xyxy boxes (0 when they do not overlap)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return float(w * h) if w > 0 and h > 0 else 0.0


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two xyxy boxes."""
    inter = box_intersection(a, b)
    if inter == 0.0:
        return 0.0
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union)
