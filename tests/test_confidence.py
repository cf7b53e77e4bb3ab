"""Per-joint confidence: the agreement of the decoder's iterations, on numbers with known answers,
in the JSON, and on the shipped model (a real hand is more certain than noise or a blank wall)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from dfl_infer.decode import CONFIDENCE_SPREAD, joint_confidence
from dfl_infer.results import Hand

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_joint_confidence_known_answers() -> None:
    final = np.random.default_rng(0).uniform(0, 256, (42, 2))
    # Every iteration where the final head is: nothing wandered, confidence 1.
    same = np.repeat(final[None], 3, axis=0)
    np.testing.assert_allclose(joint_confidence(same, final, 256), 1.0)
    # Iterations at +d, -d (along x) and 0 around the final guess: the RMS distance of the four
    # guesses from their mean (the final guess) is d / sqrt(2).
    d = 4.0 * math.sqrt(2.0)
    moved = same.copy()
    moved[0, :, 0] += d
    moved[1, :, 0] -= d
    want = math.exp(-(d / math.sqrt(2.0)) / (CONFIDENCE_SPREAD * 256))
    np.testing.assert_allclose(joint_confidence(moved, final, 256), want, rtol=1e-9)
    assert want == pytest.approx(math.exp(-1.0))  # 4 pixels of a 256-pixel crop: 1/e
    # The same pixels in a crop twice as large are half the spread in crop units.
    np.testing.assert_allclose(joint_confidence(moved, final, 512), math.exp(-0.5), rtol=1e-9)
    # Batched shapes, and a non-finite guess gives 0 for that joint alone.
    batch = np.stack([moved, same])
    moved[2, 5, 1] = np.nan
    batch[0] = moved
    got = joint_confidence(batch, np.stack([final, final]), 256)
    assert got.shape == (2, 42) and got[0, 5] == 0.0 and np.isfinite(got).all()
    assert got[0, 4] == pytest.approx(want) and (got[1] == 1.0).all()


def _hand(conf: np.ndarray | None) -> Hand:
    z = np.zeros((21, 3))
    return Hand("right", 0.9, np.zeros((21, 2)), z, z, joint_confidence=conf)


def test_hand_json_carries_the_confidence_strictly() -> None:
    conf = np.linspace(0.01, 1.0, 21)
    record = _hand(conf).to_dict()
    np.testing.assert_allclose(record["joint_confidence"], conf, atol=5e-4)  # 3 decimals
    assert _hand(None).to_dict()["joint_confidence"] is None
    broken = conf.copy()
    broken[3] = np.nan
    record = _hand(broken).to_dict()
    assert record["joint_confidence"] is None
    json.dumps(record, allow_nan=False)


def test_default_model_is_surer_of_a_real_hand_than_of_noise() -> None:
    """The shipped model, a fixed box (no detector): the right hand of a held-out real photo
    (mean 0.69 with weights version 2; 0.73 with version 1) against random noise (0.43 / 0.21
    for its two hand slots; 0.22) and a flat grey image (0.10 / 0.09; 0.07)."""
    from dfl_infer import DFLPredictor

    predictor = DFLPredictor(device="cpu", presence_threshold=0.0)
    real = predictor.predict(EXAMPLES / "real_pic00054.jpg", box=(213, 84, 406, 278))
    right = [h for h in real.hands if h.handedness == "right"][0]
    assert right.joint_confidence is not None and right.joint_confidence.shape == (21,)
    assert ((right.joint_confidence > 0) & (right.joint_confidence <= 1)).all()
    assert right.joint_confidence.mean() > 0.55
    rng = np.random.default_rng(0)
    for image in (rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), np.full((480, 640, 3), 128)):
        pred = predictor.predict(image.astype(np.uint8), box=(0, 0, 639, 479))
        for hand in pred.hands:
            assert hand.joint_confidence is not None
            assert hand.joint_confidence.mean() < 0.5, hand.handedness
            assert hand.joint_confidence.mean() < right.joint_confidence.mean() - 0.2
