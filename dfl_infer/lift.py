"""2.5D -> 3D: camera intrinsics (given or assumed) and the closed-form absolute root depth.

Frames and units: image pixels follow OpenCV's convention ((0, 0) is the centre of the top-left
pixel). The camera frame is OpenCV's: x right, y down, z forward along the optical axis, in
millimetres. A joint at pixel (u, v) and depth Z (mm) sits at ((u - cx) Z / fx, (v - cy) Z / fy, Z).

When the camera distance is unknown, the wrist depth is chosen so that the hand has a canonical
size: the sum of the squared bone lengths of the lifted skeleton equals that of a canonical adult
hand (``joints.CANONICAL_BONE_LENGTHS_MM``). With the image coordinates and the relative depths
fixed, every bone's squared length is a quadratic in the root depth Z, so the sum is one quadratic
with a closed-form root (the scale-normalized 2.5D idea of Iqbal et al., ECCV 2018, using all 20
bones instead of one reference bone for robustness).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dfl_infer.joints import CANONICAL_BONE_LENGTHS_MM, HAND_BONES, NUM_HAND_JOINTS, WRIST

# Assumed focal length when none is given: this factor times the image's longer side in pixels,
# i.e. a 53 degree field of view across the longer side: between a webcam and a phone's main
# camera (about 65-70 degrees), and the usual neutral guess for unknown photos.
DEFAULT_FOCAL_FACTOR = 1.0
# Closest plausible wrist distance (mm); guards the root solve against degenerate inputs.
MIN_ROOT_DEPTH_MM = 100.0
# Farthest wrist distance returned (mm): a hand whose joints collapse to a point in the image would
# otherwise be placed kilometres away.
MAX_ROOT_DEPTH_MM = 20000.0


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels; ``assumed`` is True when they were guessed, not given."""

    fx: float
    fy: float
    cx: float
    cy: float
    assumed: bool = False

    @property
    def matrix(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {"fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy, "assumed": self.assumed}

    def project(self, points: np.ndarray) -> np.ndarray:
        """Camera-frame points (..., 3) mm -> image pixels (..., 2): (x fx / z + cx, y fy / z + cy).
        The single place this formula is written (callers clamp z where it may reach 0)."""
        p = np.asarray(points, dtype=np.float64)
        return np.stack(
            [p[..., 0] / p[..., 2] * self.fx + self.cx, p[..., 1] / p[..., 2] * self.fy + self.cy],
            axis=-1,
        )

    def unproject(self, uv: np.ndarray, depth: np.ndarray | float) -> np.ndarray:
        """Image pixels (..., 2) at camera depth ``depth`` (..., mm) -> camera-frame points
        (..., 3) mm; with ``depth`` 1, the normalized rays. Inverse of :meth:`project`."""
        p = np.asarray(uv, dtype=np.float64)
        z = np.broadcast_to(np.asarray(depth, dtype=np.float64), p.shape[:-1])
        return np.stack(
            [(p[..., 0] - self.cx) / self.fx * z, (p[..., 1] - self.cy) / self.fy * z, z], axis=-1
        )

    def check(self, width: int, height: int) -> Intrinsics:
        """``self`` if usable for a ``width`` x ``height`` image, else a ValueError saying why:
        the focal lengths must be finite and positive, and the principal point finite and no
        more than one image size outside the image (beyond that the intrinsics surely belong to
        another image or another unit)."""
        if not all(math.isfinite(f) and f > 0 for f in (self.fx, self.fy)):
            raise ValueError(
                f"invalid intrinsics: focal lengths must be finite and positive, got fx={self.fx}, "
                f"fy={self.fy}"
            )
        if not (math.isfinite(self.cx) and math.isfinite(self.cy)):
            raise ValueError(
                f"invalid intrinsics: principal point must be finite, got {self.cx, self.cy}"
            )
        if not (-width <= self.cx <= 2 * width and -height <= self.cy <= 2 * height):
            raise ValueError(
                f"invalid intrinsics: principal point ({self.cx}, {self.cy}) lies far outside the "
                f"{width}x{height} image"
            )
        return self

    @classmethod
    def from_array(cls, values: Sequence[float] | np.ndarray) -> Intrinsics:
        """(fx, fy, cx, cy) as stored by the datasets -> Intrinsics (not assumed)."""
        fx, fy, cx, cy = (float(v) for v in np.asarray(values, dtype=np.float64).reshape(4))
        return cls(fx, fy, cx, cy)

    @classmethod
    def default(cls, width: int, height: int, focal: float | None = None) -> Intrinsics:
        """Principal point at the image centre; focal ``focal`` px if given, else the longer
        side times DEFAULT_FOCAL_FACTOR (then ``assumed`` is True)."""
        f = float(focal) if focal is not None else DEFAULT_FOCAL_FACTOR * max(width, height)
        if not (f > 0 and math.isfinite(f)):
            raise ValueError(f"focal length must be finite and positive, got {focal}")
        return cls(f, f, (width - 1) / 2, (height - 1) / 2, assumed=focal is None)

    @classmethod
    def resolve(cls, value: Any, width: int, height: int, focal: float | None = None) -> Intrinsics:
        """Intrinsics from None (assumed), an Intrinsics, (fx, fy, cx, cy), a dict with those keys,
        or a 3x3 matrix; checked against the image (:meth:`check`), a ValueError if unusable."""
        if value is None:
            return cls.default(width, height, focal)
        if isinstance(value, Intrinsics):
            return value.check(width, height)
        try:
            if isinstance(value, dict):
                fx, fy, cx, cy = (float(value[k]) for k in ("fx", "fy", "cx", "cy"))
                return cls(fx, fy, cx, cy).check(width, height)
            arr = np.asarray(value, dtype=np.float64)
        except KeyError as exc:
            raise ValueError(f"intrinsics dict needs fx, fy, cx, cy; missing {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ValueError(f"intrinsics must be numbers: {exc}") from None
        if arr.shape == (3, 3):
            k = cls(float(arr[0, 0]), float(arr[1, 1]), float(arr[0, 2]), float(arr[1, 2]))
        elif arr.shape == (4,):
            k = cls(float(arr[0]), float(arr[1]), float(arr[2]), float(arr[3]))
        else:
            raise ValueError(
                f"intrinsics must be (fx, fy, cx, cy) or a 3x3 matrix, got shape {arr.shape}"
            )
        return k.check(width, height)


def _bone_pairs(hands: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Joint indices (into the 42-joint array) of each bone of the given hands, with lengths."""
    child = np.array([h * NUM_HAND_JOINTS + c for h in hands for c, _ in HAND_BONES])
    parent = np.array([h * NUM_HAND_JOINTS + p for h in hands for _, p in HAND_BONES])
    lengths = np.concatenate([CANONICAL_BONE_LENGTHS_MM for _ in hands])
    return child, parent, lengths


def solve_root_depth(
    uv: np.ndarray,
    offsets: np.ndarray,
    intrinsics: Intrinsics,
    child: np.ndarray,
    parent: np.ndarray,
    lengths: np.ndarray,
) -> float:
    """Depth Z (mm) such that joints at pixels ``uv`` (N, 2) and depths Z + ``offsets`` (N,) give
    bones (``child``/``parent`` index arrays into ``joints``) whose squared lengths sum to those
    of ``lengths``; the bone index arrays address rows of ``uv`` and ``offsets``."""
    rays = intrinsics.unproject(uv, 1.0)  # normalized: x = (u - cx) / fx, y = (v - cy) / fy
    x, y = rays[:, 0], rays[:, 1]
    o = offsets
    # Bone vector = Z * g + h, with g the difference of the normalized rays and h the rest.
    g = np.stack([x[child] - x[parent], y[child] - y[parent], np.zeros(len(child))], axis=1)
    h = np.stack(
        [
            x[child] * o[child] - x[parent] * o[parent],
            y[child] * o[child] - y[parent] * o[parent],
            o[child] - o[parent],
        ],
        axis=1,
    )
    a = float((g * g).sum())
    b = float(2 * (g * h).sum())
    c = float((h * h).sum() - (lengths**2).sum())
    if a <= 0:
        raise ValueError(
            "cannot solve the root depth: all joints project to one ray with these intrinsics "
            f"(fx={intrinsics.fx:g}, fy={intrinsics.fy:g})"
        )
    disc = b * b - 4 * a * c
    # A negative discriminant means the relative depths alone are longer than the hand: take the
    # closest fit (the parabola's minimum) instead.
    z = (-b + np.sqrt(disc)) / (2 * a) if disc >= 0 else -b / (2 * a)
    return float(np.clip(z, MIN_ROOT_DEPTH_MM, MAX_ROOT_DEPTH_MM))


def lift_to_3d(
    uv: np.ndarray,
    depth_rel: np.ndarray,
    intrinsics: Intrinsics,
    present: Sequence[bool] = (True, True),
    rel_root_depth: float = 0.0,
    root_depth: float | None = None,
) -> np.ndarray:
    """Lift 2.5D joints of one crop to camera-frame millimetres.

    uv (42, 2) image pixels; depth_rel (42,) mm relative to each hand's own wrist; ``present``
    says which hands (right, left) exist; ``rel_root_depth`` is the left wrist's depth minus the
    right wrist's (used when both are present). ``root_depth`` (mm), when known, is the depth of
    the right wrist (or of the left wrist when only the left hand is present); otherwise it is
    solved from the canonical hand size. Returns (42, 3); rows of absent hands are NaN.
    """
    uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
    depth_rel = np.asarray(depth_rel, dtype=np.float64).reshape(-1)
    hands = [h for h in (0, 1) if present[h]]
    out = np.full((2 * NUM_HAND_JOINTS, 3), np.nan)
    if not hands:
        return out
    # Depth of every joint relative to the reference wrist (the first present hand's).
    offsets = depth_rel.copy()
    if len(hands) == 2:
        offsets[NUM_HAND_JOINTS:] += rel_root_depth
    if root_depth is None:
        child, parent, lengths = _bone_pairs(hands)
        root_depth = solve_root_depth(uv, offsets, intrinsics, child, parent, lengths)
    for h in hands:
        sl = slice(h * NUM_HAND_JOINTS, (h + 1) * NUM_HAND_JOINTS)
        out[sl] = intrinsics.unproject(uv[sl], root_depth + offsets[sl])
    return out


def relative_to_wrist(joints_3d: np.ndarray) -> np.ndarray:
    """(21, 3) or (42, 3) joints minus their own hand's wrist."""
    j = np.asarray(joints_3d, dtype=np.float64)
    hands = j.reshape(-1, NUM_HAND_JOINTS, 3)
    return (hands - hands[:, WRIST : WRIST + 1]).reshape(j.shape)
