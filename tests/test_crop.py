"""Crop geometry: the affine, its inverse, the pixel convention and the hand grouping."""

from __future__ import annotations

import numpy as np
import pytest

from dfl_infer.crop import (
    UP_JOINT,
    crop_around,
    group_hands,
    make_crop,
    square_box,
    upright_rotation,
)
from dfl_infer.joints import WRIST


def test_square_box() -> None:
    sq = square_box([10, 20, 50, 100], scale=1.25)
    np.testing.assert_allclose(sq, [-20, 10, 80, 110])
    with pytest.raises(ValueError):
        square_box([10, 10, 5, 20])


@pytest.mark.parametrize("rotation", [0.0, 30.0, -75.0])
@pytest.mark.parametrize("flip", [False, True])
def test_round_trip(rotation: float, flip: bool) -> None:
    rng = np.random.default_rng(0)
    crop = make_crop([100, 50, 300, 200], size=256, rotation=rotation, flip=flip)
    pts = rng.uniform(-100, 500, size=(50, 2))
    np.testing.assert_allclose(crop.to_image(crop.to_crop(pts)), pts, atol=1e-9)


def test_box_edges_map_to_crop_edges() -> None:
    crop = make_crop([0, 0, 100, 100], size=256, scale=1.0)
    np.testing.assert_allclose(
        crop.to_crop(np.array([[0, 0], [100, 100], [50, 50]])),
        [[-0.5, -0.5], [255.5, 255.5], [127.5, 127.5]],
    )
    assert crop.scale == pytest.approx(2.56)


def test_warp_puts_pixels_where_to_crop_says() -> None:
    img = np.zeros((300, 400, 3), np.uint8)
    img[120, 210] = 255  # one bright pixel at x=210, y=120
    for rotation, flip in [(0.0, False), (20.0, True)]:
        crop = make_crop([150, 80, 260, 190], size=256, rotation=rotation, flip=flip)
        out = crop.warp(img).astype(float).sum(axis=2)
        ys, xs = np.nonzero(out)
        centroid = np.array([(xs * out[ys, xs]).sum(), (ys * out[ys, xs]).sum()]) / out.sum()
        np.testing.assert_allclose(centroid, crop.to_crop(np.array([210.0, 120.0])), atol=0.05)


def test_flip_mirrors_horizontally() -> None:
    crop = make_crop([0, 0, 100, 100], size=100, scale=1.0, flip=True)
    # The box's left edge (x = 0 maps to -0.5 unflipped) lands on the crop's right edge.
    np.testing.assert_allclose(crop.to_crop(np.array([[0.0, 10.0]])), [[99.5, 9.5]], atol=1e-9)


def test_group_hands() -> None:
    boxes = np.array(
        [
            [0, 0, 100, 100],  # 0: touches 1
            [90, 0, 190, 100],  # 1
            [1000, 0, 1100, 100],  # 2: far away
            [1095, 0, 1200, 100],  # 3: touches 2 but same side
        ],
        dtype=float,
    )
    assert group_hands(boxes, ["right", "left", "right", "right"]) == [[0, 1], [2], [3]]
    assert group_hands(boxes) == [[0, 1], [2, 3]]
    # Several people: pairs are formed from the closest touching pair first.
    boxes = np.array([[0, 0, 100, 100], [50, 0, 150, 100], [140, 0, 240, 100]], dtype=float)
    assert group_hands(boxes, ["right", "left", "right"]) == [[0, 1], [2]]
    assert group_hands(np.zeros((0, 4))) == []


def _hand(direction_deg: float, centre=(300.0, 200.0), length: float = 80.0) -> np.ndarray:
    """21 joints on a line through ``centre`` from the wrist towards ``direction_deg`` (image
    angles, y down), the middle MCP halfway, a fixed scatter for the others."""
    a = np.deg2rad(direction_deg)
    d = np.array([np.cos(a), np.sin(a)])
    wrist = np.asarray(centre) - d * length / 2
    pts = wrist + np.outer(np.linspace(0, 1, 21), d) * length
    pts += np.random.default_rng(1).normal(0, 5, (21, 2))
    pts[WRIST], pts[UP_JOINT] = wrist, wrist + d * length / 2
    return pts


@pytest.mark.parametrize("direction", [-90.0, 0.0, 37.0, 90.0, 179.0, -150.0])
def test_upright_crop_points_the_hand_up_and_inverts_exactly(direction: float) -> None:
    hand = _hand(direction)
    rotation = upright_rotation([hand])
    crop = crop_around(hand, size=256, scale=1.25, rotation=rotation)
    wrist, mcp = crop.to_crop(hand[[WRIST, UP_JOINT]])
    up = (mcp - wrist) / np.linalg.norm(mcp - wrist)
    np.testing.assert_allclose(up, [0.0, -1.0], atol=1e-9)
    np.testing.assert_allclose(crop.to_image(crop.to_crop(hand)), hand, atol=1e-9)
    # The turned crop holds the hand as tightly as an unturned crop holds an upright one.
    inside = crop.to_crop(hand)
    extent = np.ptp(inside, axis=0).max()
    assert extent == pytest.approx(256 / 1.25, rel=1e-6)
    assert (inside > 0).all() and (inside < 255).all()


def test_two_hands_turn_by_their_mean_direction_only_when_they_agree() -> None:
    assert upright_rotation([_hand(0.0), _hand(20.0)]) == pytest.approx(100.0)
    assert upright_rotation([_hand(-90.0), _hand(90.0)]) == 0.0  # opposite: not turned
    assert upright_rotation([]) == 0.0
