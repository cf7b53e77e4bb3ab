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
