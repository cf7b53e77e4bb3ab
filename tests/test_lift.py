"""2.5D -> 3D: known intrinsics recover ground truth, and the bone-length root solve recovers a
known depth."""

from __future__ import annotations

import numpy as np
import pytest

from dfl_infer.joints import CANONICAL_BONE_LENGTHS_MM, HAND_BONES, NUM_HAND_JOINTS, WRIST
from dfl_infer.lift import Intrinsics, lift_to_3d, relative_to_wrist


def canonical_hand(rng: np.random.Generator) -> np.ndarray:
    """(21, 3) mm: a random hand with exactly the canonical bone lengths, wrist at the origin."""
    joints = np.zeros((NUM_HAND_JOINTS, 3))
    # HAND_BONES lists children before their parents along each finger; place from the wrist out.
    order = sorted(range(len(HAND_BONES)), key=lambda b: HAND_BONES[b][1] != WRIST)
    placed = {WRIST}
    while len(placed) < NUM_HAND_JOINTS:
        for b in order:
            child, parent = HAND_BONES[b]
            if parent in placed and child not in placed:
                d = rng.normal(size=3)
                d[1] -= 2.0  # fingers roughly up in the image
                joints[child] = (
                    joints[parent] + d / np.linalg.norm(d) * CANONICAL_BONE_LENGTHS_MM[b]
                )
                placed.add(child)
    return joints


@pytest.fixture
def camera() -> Intrinsics:
    return Intrinsics(fx=900.0, fy=880.0, cx=330.0, cy=250.0)


def _two_hands(rng: np.random.Generator) -> np.ndarray:
    right = canonical_hand(rng) + np.array([-60.0, 20.0, 600.0])
    left = canonical_hand(rng) + np.array([70.0, 10.0, 640.0])
    return np.concatenate([right, left])


def test_project_unproject_round_trip(camera) -> None:
    rng = np.random.default_rng(5)
    points = rng.uniform([-300, -200, 200], [300, 200, 2000], size=(50, 3))
    uv = camera.project(points)
    assert uv.shape == (50, 2)
    np.testing.assert_allclose(camera.unproject(uv, points[:, 2]), points, rtol=0, atol=1e-9)
    # Depth 1 gives the normalized rays; the principal point projects to the optical axis.
    rays = camera.unproject(uv, 1.0)
    np.testing.assert_allclose(rays[:, :2] * points[:, 2:], points[:, :2], atol=1e-9)
    np.testing.assert_allclose(camera.unproject([camera.cx, camera.cy], 5.0), [0.0, 0.0, 5.0])
    assert Intrinsics.from_array(np.array([900.0, 880.0, 330.0, 250.0])) == camera


def test_known_root_depth_recovers_ground_truth(camera) -> None:
    gt = _two_hands(np.random.default_rng(0))
    uv = camera.project(gt)
    rel = gt[:, 2] - np.repeat(gt[[WRIST, NUM_HAND_JOINTS + WRIST], 2], NUM_HAND_JOINTS)
    out = lift_to_3d(uv, rel, camera, rel_root_depth=gt[41, 2] - gt[20, 2], root_depth=gt[20, 2])
    np.testing.assert_allclose(out, gt, atol=1e-6)


def test_bone_length_solve_recovers_known_depth(camera) -> None:
    rng = np.random.default_rng(1)
    for depth in (250.0, 600.0, 1500.0):
        gt = canonical_hand(rng) + np.array([30.0, -40.0, depth])
        full = np.concatenate([gt, np.zeros((21, 3))])
        uv = camera.project(np.concatenate([gt, gt]))
        rel = np.concatenate([gt[:, 2] - gt[WRIST, 2], np.zeros(21)])
        out = lift_to_3d(uv, rel, camera, present=(True, False))
        np.testing.assert_allclose(out[:21], gt, atol=1e-6)
        assert np.isnan(out[21:]).all()
        del full
    # Both hands: one unknown depth, the left wrist placed with the relative root depth.
    gt = _two_hands(rng)
    uv = camera.project(gt)
    rel = gt[:, 2] - np.repeat(gt[[WRIST, NUM_HAND_JOINTS + WRIST], 2], NUM_HAND_JOINTS)
    out = lift_to_3d(uv, rel, camera, rel_root_depth=gt[41, 2] - gt[20, 2])
    np.testing.assert_allclose(out, gt, atol=1e-6)


def test_scaled_hand_gives_proportional_depth(camera) -> None:
    # A hand 10 % larger than canonical is placed 10 % farther (same image): the scale ambiguity.
    gt = canonical_hand(np.random.default_rng(2)) * 1.1 + np.array([0.0, 0.0, 700.0])
    uv = camera.project(np.concatenate([gt, gt]))
    rel = np.concatenate([gt[:, 2] - gt[WRIST, 2], np.zeros(21)]) / 1.1
    out = lift_to_3d(uv, rel, camera, present=(True, False))
    assert out[WRIST, 2] == pytest.approx(700.0 / 1.1, rel=1e-6)
    np.testing.assert_allclose(relative_to_wrist(out[:21]), relative_to_wrist(gt) / 1.1, atol=1e-6)


def test_intrinsics_resolution() -> None:
    k = Intrinsics.resolve(None, 640, 480)
    assert (k.fx, k.fy, k.cx, k.cy, k.assumed) == (640.0, 640.0, 319.5, 239.5, True)
    assert Intrinsics.resolve(None, 640, 480, focal=500).fx == 500.0
    m = np.array([[800, 0, 320], [0, 810, 240], [0, 0, 1.0]])
    k = Intrinsics.resolve(m, 640, 480)
    assert (k.fx, k.fy, k.cx, k.cy, k.assumed) == (800, 810, 320, 240, False)
    assert Intrinsics.resolve((1, 2, 3, 4), 9, 9) == Intrinsics(1, 2, 3, 4)
    assert Intrinsics.resolve({"fx": 1, "fy": 2, "cx": 3, "cy": 4}, 9, 9) == Intrinsics(1, 2, 3, 4)
    with pytest.raises(ValueError, match="3x3"):
        Intrinsics.resolve([1, 2, 3], 9, 9)
    with pytest.raises(ValueError, match="invalid intrinsics"):
        Intrinsics.resolve((-1, 2, 3, 4), 9, 9)
    with pytest.raises(ValueError, match="missing"):
        Intrinsics.resolve({"fx": 1}, 9, 9)
