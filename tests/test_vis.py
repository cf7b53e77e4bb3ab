"""Overlays: joint dots coloured by confidence, and the side-view inset that shows depth."""

from __future__ import annotations

import numpy as np

from dfl_infer.lift import Intrinsics
from dfl_infer.results import Hand, Prediction
from dfl_infer.vis import (
    CONFIDENCE_RAMP,
    HAND_COLOURS,
    INSET_FRACTION,
    confidence_colours,
    draw_prediction,
    inset_corner,
)


def _hand(handedness: str, depth_mm: float, at: tuple[float, float]) -> Hand:
    """A flat hand 100 mm tall at ``depth_mm``, drawn in 2D around pixel ``at``."""
    t = np.linspace(0.0, 1.0, 21)
    joints_3d = np.stack([20 * np.sin(7 * t), -50 + 100 * t, depth_mm + 10 * t], axis=1)
    joints_2d = np.stack([at[0] + 30 * np.sin(7 * t), at[1] - 60 + 120 * t], axis=1)
    rel = joints_3d - joints_3d[-1]
    return Hand(handedness, 0.9, joints_2d, joints_3d, rel, joint_confidence=t)


def _prediction(hands: list[Hand], size: int = 1000) -> Prediction:
    return Prediction(tuple(hands), size, size, Intrinsics.default(size, size), None)


def _near(image: np.ndarray, colour: tuple[int, int, int], tol: int = 40) -> np.ndarray:
    return np.abs(image.astype(int) - np.array(colour)).max(-1) <= tol


def test_confidence_colours_ramp() -> None:
    got = confidence_colours(np.array([0.0, 0.5, 1.0, np.nan, 7.0]), 5)
    assert got == [CONFIDENCE_RAMP[0], CONFIDENCE_RAMP[1], CONFIDENCE_RAMP[2]] + [
        CONFIDENCE_RAMP[0],  # not a number: the least sure colour
        CONFIDENCE_RAMP[2],  # clipped to 1
    ]
    assert confidence_colours(None, 3) == [CONFIDENCE_RAMP[2]] * 3
    # Brightness grows with confidence, so the ramp reads without telling red from green.
    lum = [0.3 * r + 0.59 * g + 0.11 * b for r, g, b in confidence_colours(np.linspace(0, 1, 9), 9)]
    assert all(a < b for a, b in zip(lum, lum[1:]))


def test_side_inset_puts_the_farther_hand_to_the_right() -> None:
    size = 1000
    side = int(INSET_FRACTION * size)
    near, far = _hand("right", 400.0, (150, 200)), _hand("left", 700.0, (300, 200))
    black = np.zeros((size, size, 3), np.uint8)
    drawn = draw_prediction(black, _prediction([near, far]))
    corner = drawn[size - side - 20 :, size - side - 20 :]  # bottom right: the hands are top left
    orange = np.argwhere(_near(corner, HAND_COLOURS["right"]))
    blue = np.argwhere(_near(corner, HAND_COLOURS["left"]))
    assert len(orange) > 50 and len(blue) > 50
    assert orange[:, 1].mean() + 0.3 * side < blue[:, 1].mean()  # 300 mm apart in depth
    # Without the inset, or without a hand with finite 3D joints, the corner stays black.
    plain = draw_prediction(black, _prediction([near, far]), depth_inset=False)
    assert not plain[size - side - 20 :, size - side - 20 :].any()
    broken = Hand("right", 0.9, near.joints_2d, np.full((21, 3), np.nan), near.joints_3d_rel)
    assert not draw_prediction(black, _prediction([broken]))[
        size - side - 20 :, size - side - 20 :
    ].any()
    # An image too small for an inset: only the skeleton.
    tiny = draw_prediction(np.zeros((100, 100, 3), np.uint8), _prediction([near], 100))
    assert tiny.shape == (100, 100, 3)


def test_inset_corner_avoids_the_hands() -> None:
    w, h, side, margin = 640, 480, 144, 7
    # Nothing to avoid: bottom right.
    assert inset_corner(w, h, side, margin, []) == (w - side - margin, h - side - margin)
    # A hand in the bottom-right corner: the bottom-left one is free.
    hand = np.array([[560.0, 400.0], [620.0, 470.0]])
    assert inset_corner(w, h, side, margin, [hand]) == (margin, h - side - margin)
    # Hands in both bottom corners: a top corner.
    other = np.array([[20.0, 400.0], [80.0, 470.0]])
    assert inset_corner(w, h, side, margin, [hand, other])[1] == margin
