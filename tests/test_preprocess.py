"""The network's input contract (preprocess.py) and the decode step (decode.py) on numbers with
known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dfl_infer.crop import make_crop
from dfl_infer.decode import CropOutputs, decode, presence_probability
from dfl_infer.lift import Intrinsics
from dfl_infer.model import DFLConfig
from dfl_infer.preprocess import crop_batch, normalize


def test_crop_batch_is_the_stacked_warps() -> None:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (300, 400, 3), dtype=np.uint8) for _ in range(2)]
    crops = [make_crop((10, 20, 200, 180), 64), make_crop((100, 50, 390, 290), 64, rotation=20)]
    batch = crop_batch(images, crops)
    assert batch.shape == (2, 64, 64, 3) and batch.dtype == np.uint8
    np.testing.assert_array_equal(batch, np.stack([c.warp(im) for c, im in zip(crops, images)]))
    with pytest.raises(ValueError, match="different sizes"):
        crop_batch(images, [crops[0], make_crop((0, 0, 10, 10), 32)])


def test_normalize_uint8_and_float_agree() -> None:
    cfg = DFLConfig.tiny()
    rgb = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), np.uint8))
    from_uint8 = normalize(rgb, cfg, channels_last=True)
    assert from_uint8.shape == (2, 3, 32, 32) and from_uint8.dtype == torch.float32
    assert from_uint8.is_contiguous(memory_format=torch.channels_last)
    from_float = normalize(rgb.permute(0, 3, 1, 2).float() / 255.0, cfg)
    mean = torch.tensor(cfg.mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std).view(1, 3, 1, 1)
    expected = (rgb.permute(0, 3, 1, 2).double() / 255.0 - mean.double()) / std.double()
    torch.testing.assert_close(from_uint8.double(), expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(from_float.double(), expected, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match=r"\(B, S, S, 3\)"):
        normalize(rgb.permute(0, 3, 1, 2).contiguous(), cfg)


def test_decode_round_trip() -> None:
    """Joints in the camera frame -> 2.5D in a crop -> decode with the true root depth: back."""
    camera = Intrinsics(600.0, 610.0, 320.0, 240.0)
    rng = np.random.default_rng(2)
    joints = rng.uniform([-80, -60, 480], [80, 60, 560], size=(42, 3))
    uv = camera.project(joints)
    crop = make_crop(np.r_[uv.min(0), uv.max(0)], 128, rotation=15.0)
    wrists = joints[[20, 41], 2]
    depth_rel = joints[:, 2] - np.repeat(wrists, 21)
    uvd = np.column_stack([crop.to_crop(uv), depth_rel])
    rel_root = float(wrists[1] - wrists[0])
    uv_back, xyz = decode(uvd, crop, camera, (True, True), rel_root, root_depth=float(wrists[0]))
    np.testing.assert_allclose(uv_back, uv, atol=1e-9)
    np.testing.assert_allclose(xyz, joints, atol=1e-6)
    # Only the left hand present: its own wrist is the root; the right rows are NaN.
    _, left = decode(uvd, crop, camera, (False, True), rel_root, root_depth=float(wrists[1]))
    np.testing.assert_allclose(left[21:], joints[21:], atol=1e-6)
    assert np.isnan(left[:21]).all()


def test_crop_outputs_and_presence() -> None:
    iters = np.zeros((1, 3, 42, 2))
    out = CropOutputs(
        np.zeros((1, 42, 3)),
        np.array([[0.0, 800.0]]),
        np.zeros(1),
        iters,
        np.array([[20.0, -20.0]]),
    )
    both = CropOutputs.concatenate([out, out])
    assert len(both) == 2 and both.joints_25d.shape == (2, 42, 3)
    np.testing.assert_allclose(both.presence(), [[0.5, 1.0], [0.5, 1.0]])
    assert presence_probability(np.array([-800.0]))[0] == 0.0  # no overflow warning either


def _slots(handedness: list[float], presence: list[float]) -> CropOutputs:
    """One crop whose slot 0 joints are all 0 and slot 1 joints all 1 (u, v, depth)."""
    uvd = np.concatenate([np.zeros((21, 3)), np.ones((21, 3))])[None].astype(np.float32)
    iters = np.repeat(uvd[:, None, :, :2], 3, axis=1)
    return CropOutputs(
        uvd,
        np.array([presence], np.float32),
        np.array([7.0], np.float32),
        iters,
        np.array([handedness], np.float32),
    )


@pytest.mark.parametrize(
    ("handedness", "presence", "swap"),
    [
        ([2.0, -3.0], [5.0, 5.0], False),  # slot 0 right, slot 1 left
        ([-2.0, 3.0], [5.0, 5.0], True),  # slot 0 left, slot 1 right
        ([4.0, 1.0], [5.0, 5.0], False),  # both say right: slot 0 is surer, keeps it
        ([1.0, 4.0], [5.0, 5.0], True),  # both say right: slot 1 is surer
        ([-1.0, 9.0], [5.0, -9.0], True),  # a lone left hand in slot 0: its own sign decides
        ([2.0, -9.0], [-9.0, 5.0], False),  # a lone hand in slot 1 that says left
        ([-2.0, 9.0], [-9.0, 5.0], True),  # a lone hand in slot 1 that says right
    ],
)
def test_sided_puts_the_right_hand_first(handedness, presence, swap) -> None:
    out = _slots(handedness, presence)
    sided = out.sided()
    assert bool(out.swapped()[0]) is swap
    first = 1.0 if swap else 0.0
    assert (sided.joints_25d[0, :21] == first).all() and (
        sided.joints_25d[0, 21:] == 1 - first
    ).all()
    assert (sided.joints_2d_iter[0, :, :21] == first).all()
    assert sided.rel_root_depth[0] == (-7.0 if swap else 7.0)
    assert sided.hand_presence[0].tolist() == (presence[::-1] if swap else presence)
    assert sided.handedness[0].tolist() == (handedness[::-1] if swap else handedness)
    # Sided outputs are sided: a second pass changes nothing.
    assert not sided.sided().swapped().any()


def _random_outputs(rng: np.random.Generator, presence: list[list[float]]) -> CropOutputs:
    """Random outputs of len(presence) crops of 64 pixels (3 decoder iterations)."""
    b = len(presence)
    return CropOutputs(
        rng.uniform(0, 63, (b, 42, 3)).astype(np.float32),
        np.array(presence, np.float32),
        rng.uniform(-50, 50, b).astype(np.float32),
        rng.uniform(0, 63, (b, 3, 42, 2)).astype(np.float32),
        rng.uniform(-4, 4, (b, 2)).astype(np.float32),
    )


def _as_if_mirrored(out: CropOutputs, swap: np.ndarray, size: int) -> CropOutputs:
    """What a perfectly mirror-equivariant network returns on the mirrored crops, its slots
    in the other order where ``swap``."""
    perm = list(range(21, 42)) + list(range(21))
    m = swap.reshape(-1, 1, 1)
    joints = np.where(m, out.joints_25d[:, perm], out.joints_25d)
    iters = np.where(m[..., None], out.joints_2d_iter[:, :, perm], out.joints_2d_iter)
    joints[..., 0] = size - 1 - joints[..., 0]
    iters[..., 0] = size - 1 - iters[..., 0]
    return CropOutputs(
        joints,
        np.where(swap[:, None], out.hand_presence[:, ::-1], out.hand_presence),
        np.where(swap, -out.rel_root_depth, out.rel_root_depth),
        iters,
        -np.where(swap[:, None], out.handedness[:, ::-1], out.handedness),
    )


def test_flip_averaged_with_an_equivariant_mirror_changes_nothing() -> None:
    rng = np.random.default_rng(3)
    out = _random_outputs(rng, [[5, 5], [5, 5], [4, -6], [-6, 4]])
    swap = np.array([False, True, True, False])
    mirrored = _as_if_mirrored(out, swap, 64)
    averaged = out.flip_averaged(mirrored, 64)
    expected = out.sided()
    for name in CropOutputs.NAMES:
        if name != "joints_2d_iter":
            np.testing.assert_allclose(getattr(averaged, name), getattr(expected, name), atol=1e-4)
    # The 2D guesses of both passes: each pass's iterations and its final joints.
    one = np.concatenate([expected.joints_2d_iter, expected.joints_25d[:, None, :, :2]], axis=1)
    np.testing.assert_allclose(
        averaged.joints_2d_iter, np.concatenate([one, one], axis=1), atol=1e-4
    )


def test_flip_test_confidence_falls_where_the_passes_disagree() -> None:
    """Each joint's confidence under the flip test spreads over both passes' guesses: where the
    mirrored pass puts a hand's joints 6 pixels off, that hand's confidence falls below the
    one-pass figure; where it agrees, it stays near it."""
    rng = np.random.default_rng(6)
    out = _random_outputs(rng, [[5, 5]])
    near = out.joints_25d.copy()
    out = CropOutputs(
        out.joints_25d,
        out.hand_presence,
        out.rel_root_depth,
        near[:, None, :, :2] + rng.normal(0, 0.5, (1, 3, 42, 2)).astype(np.float32),
        np.array([[3, -3]], np.float32),
    )
    moved = CropOutputs(*(getattr(out, name).copy() for name in CropOutputs.NAMES))
    moved.joints_25d[:, 21:, 0] += 6.0  # the left hand's joints, in the mirrored pass
    moved.joints_2d_iter[:, :, 21:, 0] += 6.0
    averaged = out.flip_averaged(_as_if_mirrored(moved, np.array([False]), 64), 64)
    one, two = out.confidence(64)[0], averaged.confidence(64)[0]
    assert (two[21:] < one[21:] - 0.2).all()
    np.testing.assert_allclose(two[:21], one[:21], atol=0.1)


def test_flip_averaged_averages_the_paired_slots() -> None:
    """The mirrored pass sees every joint 2 pixels further right in the unmirrored crop, each
    hand's presence and side logits 1 higher and the relative root depth 4 mm larger: the
    average is half of each, whichever order the mirrored pass's slots came in."""
    rng = np.random.default_rng(4)
    out = _random_outputs(rng, [[5, 5], [5, 5]])
    out = CropOutputs(
        out.joints_25d,
        out.hand_presence,
        out.rel_root_depth,
        out.joints_2d_iter,
        np.array([[3, -3], [3, -3]], np.float32),
    )
    moved = CropOutputs(
        out.joints_25d + np.array([2.0, 0.0, 0.0], np.float32),
        out.hand_presence + 1,
        out.rel_root_depth + 4,
        out.joints_2d_iter + np.array([2.0, 0.0], np.float32),
        out.handedness + np.array([1.0, -1.0], np.float32),
    )
    averaged = out.flip_averaged(_as_if_mirrored(moved, np.array([True, False]), 64), 64)
    np.testing.assert_allclose(averaged.joints_25d[..., 0], out.joints_25d[..., 0] + 1, atol=1e-4)
    np.testing.assert_allclose(averaged.joints_25d[..., 1:], out.joints_25d[..., 1:], atol=1e-4)
    np.testing.assert_allclose(averaged.hand_presence, out.hand_presence + 0.5)
    np.testing.assert_allclose(averaged.rel_root_depth, out.rel_root_depth + 2, atol=1e-4)
    np.testing.assert_allclose(averaged.handedness, [[3.5, -3.5], [3.5, -3.5]])


def test_flip_averaged_pairs_a_found_hand_with_the_found_hand() -> None:
    """One hand, in slot 0 of the plain pass and slot 1 of the mirrored one, the empty slots'
    joints anywhere: the found hands are paired (by presence, not by the empty slots' joints),
    and the averaged hand stays found, the empty slot empty."""
    rng = np.random.default_rng(5)
    out = _random_outputs(rng, [[6, -6]])
    out = CropOutputs(
        out.joints_25d,
        out.hand_presence,
        out.rel_root_depth,
        out.joints_2d_iter,
        np.array([[4, 0]], np.float32),
    )
    mirrored = _as_if_mirrored(out, np.array([True]), 64)
    # The mirrored pass's empty slot (now slot 0) lies right on the plain pass's hand.
    on_the_hand = out.joints_25d[0, :21].copy()
    on_the_hand[:, 0] = 63 - on_the_hand[:, 0]
    mirrored.joints_25d[0, :21] = on_the_hand
    averaged = out.flip_averaged(mirrored, 64)
    np.testing.assert_allclose(averaged.joints_25d[0, :21], out.joints_25d[0, :21], atol=1e-4)
    assert averaged.presence()[0, 0] > 0.99 and averaged.presence()[0, 1] < 0.01


def test_run_flip_test_maps_the_mirror_back() -> None:
    """A stand-in network that puts every joint on the brightest column of its crop: the
    mirrored half of the batch (one call for both) finds it at S - 1 - u, which the flip test
    maps back onto u."""
    from dfl_infer.backends import run_flip_test

    class Runner:
        config = DFLConfig.tiny()
        calls: list[int] = []

        def __call__(self, crops: np.ndarray) -> CropOutputs:
            self.calls.append(len(crops))
            u = crops[..., 0].sum(axis=1).argmax(axis=1).astype(np.float32)  # brightest column
            b = len(crops)
            joints = np.zeros((b, 42, 3), np.float32)
            joints[..., 0] = u[:, None]
            return CropOutputs(
                joints,
                np.full((b, 2), 5.0, np.float32),
                np.zeros(b, np.float32),
                np.repeat(joints[:, None, :, :2], 2, axis=1),
                np.tile(np.array([[2.0, -2.0]], np.float32), (b, 1)),
            ).sided()

    size = Runner.config.input_size
    crops = np.zeros((2, size, size, 3), np.uint8)
    crops[0, :, 5] = 255
    crops[1, :, size - 10] = 255
    runner = Runner()
    out = run_flip_test(runner, crops)
    assert runner.calls == [4]
    np.testing.assert_allclose(out.joints_25d[:, :, 0], [[5.0] * 42, [size - 10.0] * 42])
    # It calls slot 0 right on a crop and on its mirror image too: the two sides cancel.
    np.testing.assert_allclose(out.handedness, [[0.0, 0.0], [0.0, 0.0]])
