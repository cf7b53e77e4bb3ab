"""DFLPredictor end to end on a tiny random model (untrained: these check plumbing, geometry and
the result schema, not accuracy). A stand-in detector with fixed boxes drives the crop planning."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from PIL import Image

from dfl_infer import DFLPredictor, Hand, Prediction
from dfl_infer.image import ImageError
from dfl_infer.predictor import DEFAULT_HUB_ID, NoWeightsError, default_weights


@dataclass(frozen=True)
class Det:
    box: np.ndarray
    handedness: str
    score: float = 0.9


class FixedDetector:
    """Returns the same detections for every image; counts calls."""

    def __init__(self, dets):
        self.dets, self.calls = dets, 0

    def detect(self, rgb):
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
        self.calls += 1
        return list(self.dets)


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (360, 480, 3), dtype=np.uint8)


def _check(pred: Prediction, width: int, height: int) -> None:
    assert (pred.width, pred.height) == (width, height)
    for hand in pred.hands:
        assert isinstance(hand, Hand) and hand.handedness in ("right", "left")
        assert 0.0 <= hand.score <= 1.0
        assert hand.joints_2d.shape == (21, 2) and hand.joints_3d.shape == (21, 3)
        assert np.isfinite(hand.joints_3d).all() and (hand.joints_3d[:, 2] > 0).all()
        np.testing.assert_allclose(hand.joints_3d_rel, hand.joints_3d - hand.joints_3d[20])
        # The lifted joints project back onto the 2D joints.
        k = pred.intrinsics
        uv = hand.joints_3d[:, :2] / hand.joints_3d[:, 2:] * [k.fx, k.fy] + [k.cx, k.cy]
        np.testing.assert_allclose(uv, hand.joints_2d, atol=1e-6)
    d = pred.to_dict()
    assert set(d) == {"width", "height", "intrinsics", "box", "hands"}
    assert set(d["intrinsics"]) == {"fx", "fy", "cx", "cy", "assumed"}


@pytest.mark.parametrize(
    ("dets", "n_crops"),
    [
        ([], 1),  # nothing found: whole-image pass
        ([Det(np.array([100.0, 100, 200, 220]), "right")], 1),  # lone hand: its own crop
        (
            [
                Det(np.array([100.0, 100, 200, 220]), "right"),
                Det(np.array([190.0, 100, 300, 220]), "left"),
            ],
            1,
        ),  # touching: one union crop
        (
            [
                Det(np.array([10.0, 10, 60, 60]), "right"),
                Det(np.array([380.0, 250, 470, 350]), "left"),
            ],
            2,
        ),  # far apart: one crop each
    ],
    ids=["none", "single", "pair", "far-apart"],
)
def test_crop_plans(tiny_weights, image, dets, n_crops) -> None:
    detector = FixedDetector(dets)
    p = DFLPredictor(tiny_weights, device="cpu", detector=detector, presence_threshold=0.0)
    pred = p.predict(image)
    assert detector.calls == 1
    _check(pred, 480, 360)
    assert pred.intrinsics.assumed and pred.intrinsics.fx == 480
    # Threshold 0 keeps every hand slot of every final crop, minus cross-crop duplicates.
    assert 1 <= len(pred.hands) <= 2 * max(1, len(dets))
    assert len(pred.crops) == n_crops


# One right hand found by the detector (image pixels): the lone-hand crop tests.
LONE_HAND = np.array([100.0, 100, 200, 220])


def _lone_hand_predictor(weights: Any, **options: Any) -> DFLPredictor:
    """A CPU predictor whose detector finds ``LONE_HAND`` in every image."""
    return DFLPredictor(
        weights, device="cpu", detector=FixedDetector([Det(LONE_HAND, "right")]), **options
    )


def test_recrop_keeps_the_detected_hand(tiny_weights, image) -> None:
    # An untrained network puts all joints near one point; the second pass must still contain
    # the hand the detector found rather than a speck around the collapsed joints.
    p = _lone_hand_predictor(tiny_weights, presence_threshold=0.0)
    (crop,) = p.predict(image).crops
    assert (crop[:2] <= LONE_HAND[:2]).all() and (crop[2:] >= LONE_HAND[2:]).all()


@pytest.mark.parametrize(
    ("threshold", "widen", "recrop", "passes"),
    [
        (1.0, 1.0, False, 1),  # the network finds no second hand: the hand's own crop is final
        (1.0, 2.0, False, 1),  # same, on a crop twice as wide
        (0.0, 1.0, False, 1),  # "both hands" on the one hand (random weights): same crop, final
        (1.0, 2.0, True, 2),  # recrop_lone_hands: widened pass, then a re-crop, always
    ],
)
def test_lone_hand_costs_one_pass_unless_a_second_hand_appears(
    tiny_weights, image, threshold, widen, recrop, passes
) -> None:
    det = LONE_HAND
    p = _lone_hand_predictor(
        tiny_weights,
        presence_threshold=threshold,
        lone_hand_widen=widen,
        recrop_lone_hands=recrop,
        hand_pass=False,  # the crop planning alone (test_hand_pass_runs_each_hand_...)
        recrop_presence=threshold,  # no maybe-hands (test_a_maybe_second_hand_...)
    )
    net, calls = p._net, []
    p._net = lambda batch: calls.append(len(batch)) or net(batch)  # type: ignore[assignment]
    (crop,) = p.predict(image).crops
    assert calls == [1] * passes
    if passes == 1:  # the detector box, squared, scaled by box_scale and the widening
        side = (det[3] - det[1]) * p.config.box_scale * widen
        assert np.allclose(crop[3] - crop[1], side, rtol=1e-6)


def test_lone_hand_widen_is_checked(tiny_weights) -> None:
    for bad in (0.5, float("nan")):
        with pytest.raises(ValueError, match="lone_hand_widen"):
            DFLPredictor(tiny_weights, device="cpu", lone_hand_widen=bad)


def test_presence_threshold_gates_hands(tiny_weights, image) -> None:
    p = DFLPredictor(tiny_weights, device="cpu", detector=FixedDetector([]), presence_threshold=1.0)
    assert p.predict(image).hands == ()


def test_user_box_intrinsics_and_inputs(tiny_weights, image, tmp_path) -> None:
    detector = FixedDetector([])
    p = DFLPredictor(tiny_weights, device="cpu", detector=detector, presence_threshold=0.0)
    k = (500.0, 510.0, 240.0, 180.0)
    pred = p.predict(image, box=(100, 80, 260, 240), intrinsics=k)
    assert detector.calls == 0  # a user box skips the detector
    assert not pred.intrinsics.assumed and pred.intrinsics.fy == 510.0
    np.testing.assert_allclose(pred.crops[0], [80, 60, 280, 260])  # square x 1.25
    _check(pred, 480, 360)
    # Path, PIL and numpy inputs give the same result.
    Image.fromarray(image).save(tmp_path / "im.png")
    for inp in (tmp_path / "im.png", str(tmp_path / "im.png"), Image.fromarray(image)):
        other = p.predict(inp, box=(100, 80, 260, 240), intrinsics=k)
        for a, b in zip(pred.hands, other.hands):
            np.testing.assert_allclose(a.joints_3d, b.joints_3d)
    with pytest.raises(ValueError, match="box must be"):
        p.predict(image, box=(10, 10, 5, 5))
    with pytest.raises(ImageError):
        p.predict(tmp_path / "missing.png")


def test_batch_matches_single(tiny_weights, image) -> None:
    dets = [Det(np.array([100.0, 100, 200, 220]), "right")]
    p = DFLPredictor(
        tiny_weights,
        device="cpu",
        detector=FixedDetector(dets),
        presence_threshold=0.0,
        batch_size=3,
    )
    images = [image, image[::-1].copy(), image[:, ::-1].copy(), image]
    batch = p.predict_batch(images)
    for img, got in zip(images, batch):
        want = p.predict(img)
        assert len(got.hands) == len(want.hands)
        for a, b in zip(got.hands, want.hands):
            np.testing.assert_allclose(a.joints_2d, b.joints_2d, atol=1e-3)


def test_given_detections_skip_the_detector(tiny_weights, image) -> None:
    dets = [Det(np.array([100.0, 100, 200, 220]), "right")]
    detector = FixedDetector(dets)
    p = DFLPredictor(tiny_weights, device="cpu", detector=detector, presence_threshold=0.0)
    want = p.predict(image)
    assert detector.calls == 1
    # Detections found elsewhere (the CLI's worker processes) replace the detector's call; an
    # empty list means "looked, found nothing" (whole-image pass), None means "detect here".
    got, empty, none = p.predict_batch([image] * 3, detections=[dets, [], None])
    assert detector.calls == 2
    np.testing.assert_allclose(np.stack(got.crops), np.stack(want.crops))
    assert len(got.hands) == len(want.hands)
    for a, b in zip(got.hands, want.hands):
        np.testing.assert_allclose(a.joints_2d, b.joints_2d, atol=1e-3)
    np.testing.assert_allclose(empty.crops[0], [-0.5, -60.5, 479.5, 419.5])  # the whole image
    with pytest.raises(ValueError, match="one entry per image"):
        p.predict_batch([image], detections=[])


def test_backend_arguments_are_checked(tiny_weights) -> None:
    with pytest.raises(ValueError, match="backend must be one of"):
        DFLPredictor(tiny_weights, device="cpu", backend="tensorrt")
    with pytest.raises(ValueError, match="torch' only"):
        DFLPredictor(tiny_weights, device="cpu", backend="onnxruntime", compile=True)


def test_default_weights_error_is_clear(monkeypatch) -> None:
    if default_weights() != DEFAULT_HUB_ID:
        pytest.skip("trained default weights are present in weights/")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(NoWeightsError, match="Pass weights explicitly"):
        DFLPredictor(device="cpu")


def _fake_runner(config, second_hand_offset: float, presence_logits=(5.0, 5.0)):
    """A backend stand-in: both hands present (``presence_logits``); the right hand's joints in
    the crop's middle, the left hand's the same shifted right by ``second_hand_offset`` crop
    pixels."""
    from dfl_infer.decode import CropOutputs

    size = config.input_size
    rng = np.random.default_rng(0)
    right = size / 2 + rng.uniform(-size / 8, size / 8, (21, 2))
    left = right + np.array([second_hand_offset, 0.0])
    calls: list[np.ndarray] = []

    def run(crops: np.ndarray) -> CropOutputs:
        calls.append(crops)
        b = len(crops)
        uv = np.concatenate([right, left])[None].repeat(b, 0)
        joints = np.concatenate([uv, np.zeros((b, 42, 1))], axis=2).astype(np.float32)
        return CropOutputs(
            joints,
            np.tile(np.asarray(presence_logits, np.float32), (b, 1)),
            np.zeros(b, np.float32),
            uv[:, None].repeat(3, 1).astype(np.float32),
            np.tile(np.array([[20.0, -20.0]], np.float32), (b, 1)),
        )

    run.config = config  # type: ignore[attr-defined]
    return run, calls


@pytest.mark.parametrize(("offset", "passes"), [(0.0, 1), (200.0, 2)])
def test_second_hand_recrops_only_when_the_crop_changes(
    tiny_weights, image, offset, passes
) -> None:
    """A second hand found in a lone hand's crop costs a re-crop pass only when the re-crop
    differs from the first crop: not when the network put both hands on the detected one."""
    det = LONE_HAND
    p = _lone_hand_predictor(tiny_weights, hand_pass=False)
    p._net, calls = _fake_runner(p.config, offset)  # type: ignore[assignment]
    pred = p.predict(image)
    assert len(calls) == passes
    (crop,) = pred.crops
    if passes == 2:  # re-cropped on both hands: wider than the detected hand's own crop
        side = (det[3] - det[1]) * p.config.box_scale
        assert crop[2] - crop[0] > 1.2 * side


@pytest.mark.parametrize(("recrop_presence", "passes"), [(0.25, 2), (0.5, 1)])
def test_a_maybe_second_hand_earns_a_second_look(
    tiny_weights, image, recrop_presence, passes
) -> None:
    """A second hand under the presence threshold but at recrop_presence or more in a lone
    hand's crop is looked at again in a crop that holds both; reported only if it passes the
    threshold there (here its presence stays 0.3)."""
    p = _lone_hand_predictor(tiny_weights, hand_pass=False, recrop_presence=recrop_presence)
    maybe = float(np.log(0.3 / 0.7))  # the logit of a presence of 0.3
    p._net, calls = _fake_runner(p.config, 200.0, (5.0, maybe))  # type: ignore[assignment]
    pred = p.predict(image)
    assert len(calls) == passes
    assert [h.handedness for h in pred.hands] == ["right"]
    (crop,) = pred.crops
    side = (LONE_HAND[3] - LONE_HAND[1]) * p.config.box_scale
    assert (crop[2] - crop[0] > 1.2 * side) == (passes == 2)  # the re-crop holds both hands
    with pytest.raises(ValueError, match="recrop_presence"):
        DFLPredictor(tiny_weights, device="cpu", recrop_presence=float("nan"))


@pytest.mark.parametrize(
    ("offset", "hand_pass", "batches"),
    [
        (200.0, True, [1, 1, 2]),  # lone crop, re-crop on both hands, then one crop per hand
        (200.0, False, [1, 1]),
        (0.0, True, [1]),  # both slots on one place: one hand found twice, no per-hand pass
    ],
)
def test_hand_pass_runs_each_hand_of_a_pair_in_a_crop_of_its_own(
    tiny_weights, image, offset, hand_pass, batches
) -> None:
    p = _lone_hand_predictor(tiny_weights, hand_pass=hand_pass)
    p._net, calls = _fake_runner(p.config, offset)  # type: ignore[assignment]
    pred = p.predict(image)
    assert [len(c) for c in calls] == batches
    assert len(pred.hands) == 2


@dataclass(frozen=True)
class MarkedDet:
    box: np.ndarray
    handedness: str
    landmarks: np.ndarray
    score: float = 0.9


def test_upright_model_turns_the_crop_and_maps_back_exactly(tmp_path, image) -> None:
    """An upright model's crop is turned by the detected landmarks (a hand pointing right: 90
    degrees), and the network's crop-pixel joints come back to the same image pixels."""
    import torch

    from dfl_infer.crop import UP_JOINT
    from dfl_infer.decode import CropOutputs
    from dfl_infer.joints import WRIST
    from dfl_infer.model import DFLConfig, DFLModel

    torch.manual_seed(0)
    DFLModel(DFLConfig.tiny(upright=True)).save_pretrained(tmp_path)
    marks = np.zeros((21, 2)) + [240.0, 180.0]
    marks[:, 0] += np.linspace(-40, 40, 21)
    marks[WRIST], marks[UP_JOINT] = [200.0, 180.0], [240.0, 180.0]
    det = MarkedDet(np.array([200.0, 170, 280, 190]), "right", marks)
    p = DFLPredictor(tmp_path, device="cpu", detector=FixedDetector([det]))
    crops = []

    def run(batch: np.ndarray) -> CropOutputs:
        crops.append(batch)
        b = len(batch)
        # The network "finds" a right hand at the crop's middle column, pointing up.
        uv = np.stack([np.full(42, 128.0), np.linspace(60, 200, 42)], axis=1)
        joints = np.concatenate([uv, np.zeros((42, 1))], axis=1)[None].repeat(b, 0)
        return CropOutputs(
            joints.astype(np.float32),
            np.tile(np.array([[5.0, -5.0]], np.float32), (b, 1)),
            np.zeros(b, np.float32),
            np.repeat(joints[:, None, :, :2], 3, axis=1).astype(np.float32),
            np.tile(np.array([[20.0, -20.0]], np.float32), (b, 1)),
        )

    run.config = p.config  # type: ignore[attr-defined]
    p._net = run  # type: ignore[assignment]
    pred = p.predict(image)
    (hand,) = pred.hands
    (crop_box,) = pred.crops
    # Up in the crop is +x in the image for a 90-degree turn: the column of joints at crop
    # x = 128 is a row in the image, from the crop's centre outwards along +x for smaller v.
    rows = hand.joints_2d
    assert np.ptp(rows[:, 1]) < 1e-6 and np.ptp(rows[:, 0]) > 10
    assert rows[0, 0] > rows[-1, 0]  # smaller crop v (higher up) -> farther along +x
    # Exact inverse: the image joints map back to the crop joints the runner returned.
    from dfl_infer.crop import crop_around, upright_rotation

    crop = crop_around(marks, p.config.input_size, p.config.box_scale, upright_rotation([marks]))
    np.testing.assert_allclose(crop.box, crop_box, atol=1e-9)
    np.testing.assert_allclose(crop.to_crop(hand.joints_2d)[:, 0], 128.0, atol=1e-6)


def test_a_small_weak_second_hand_of_a_crop_is_dropped() -> None:
    from dfl_infer.predictor import drop_small_partner

    rng = np.random.default_rng(0)
    big = rng.uniform(100, 300, (21, 2))  # about 200 px across
    small = 150 + rng.uniform(0, 60, (21, 2))  # about 60 px: under half
    both = np.array([True, True])
    uv = np.concatenate([big, small])
    assert drop_small_partner(uv, np.array([0.99, 0.7]), both).tolist() == [True, False]
    # Confident, or not that small, or the other hand absent: kept as it is.
    assert drop_small_partner(uv, np.array([0.99, 0.95]), both).tolist() == [True, True]
    similar = np.concatenate([big, 50 + rng.uniform(0, 150, (21, 2))])
    assert drop_small_partner(similar, np.array([0.99, 0.7]), both).tolist() == [True, True]
    one = np.array([False, True])
    assert drop_small_partner(uv, np.array([0.2, 0.7]), one).tolist() == [False, True]
    # Either slot can be the small one.
    swapped = np.concatenate([small, big])
    assert drop_small_partner(swapped, np.array([0.6, 0.99]), both).tolist() == [False, True]


def test_one_hand_detected_twice_is_one_detection() -> None:
    """A low palm threshold may give one hand two detections: the weaker one on the same place
    goes (it would make a pair crop with two hands on one); distinct hands, even overlapping
    ones, and detections without landmarks (a tracker's coasting boxes) stay, in their order."""
    from dfl_infer.predictor import distinct_detections

    hand = np.random.default_rng(1).uniform(100, 200, (21, 2))
    beside = hand + [60.0, 0.0]  # overlapping boxes, but another hand
    dets = [
        MarkedDet(np.r_[hand.min(0), hand.max(0)], "left", hand + 3.0, score=0.6),
        MarkedDet(np.r_[beside.min(0), beside.max(0)], "right", beside, score=0.5),
        Det(np.array([0.0, 0, 50, 50]), "right", score=0.1),
        MarkedDet(np.r_[hand.min(0), hand.max(0)], "right", hand, score=0.9),
    ]
    kept = distinct_detections(dets)
    assert kept == [dets[1], dets[2], dets[3]]
    assert distinct_detections(dets[:2]) == dets[:2]
    assert distinct_detections([]) == []
