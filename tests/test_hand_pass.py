"""The per-hand pass (dfl_infer.hand_pass): which hands get a crop of their own, the nearer slot
replacing each hand exactly (image pixels through two crops), and the collapse guard."""

from __future__ import annotations

import numpy as np
import pytest

from dfl_infer.crop import crop_around, make_crop, points_box, union_box, upright_rotation
from dfl_infer.hand_pass import hand_crops, hand_pass, merge_hand_passes

SIZE, SCALE = 256, 1.25


def _hand(origin: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """(21, 2) image pixels of a hand-sized spread of joints, wrist first, pointing up."""
    pts = np.asarray(origin) + rng.uniform(-30, 30, (21, 2))
    pts[0] = [origin[0], origin[1] + 45]  # wrist below
    pts[11] = [origin[0], origin[1] - 10]  # middle MCP above it
    return pts


@pytest.fixture
def pair():
    rng = np.random.default_rng(3)
    right, left = _hand((200.0, 200.0), rng), _hand((300.0, 210.0), rng)
    joints = np.concatenate([right, left])
    crop = make_crop(union_box(np.stack([points_box(right), points_box(left)])), SIZE, SCALE)
    return crop, joints


@pytest.mark.parametrize("upright", [False, True])
def test_each_hand_gets_the_crop_the_model_would_give_it_alone(pair, upright) -> None:
    crop, joints = pair
    crops = hand_crops(crop, crop.to_crop(joints), SIZE, SCALE, upright)
    for h, own in enumerate(crops):
        pts = joints[21 * h : 21 * (h + 1)]
        want = crop_around(pts, SIZE, SCALE, upright_rotation([pts]) if upright else 0.0)
        assert own is not None
        np.testing.assert_allclose(own.matrix, want.matrix, atol=1e-9)
        assert own.box[2] - own.box[0] < 0.8 * (crop.box[2] - crop.box[0])  # closer in


def test_no_crop_for_a_hand_that_is_the_pair_or_not_finite(pair) -> None:
    crop, joints = pair
    on_one = np.concatenate([joints[:21], joints[:21]])  # both slots on the right hand
    one_crop = crop_around(joints[:21], SIZE, SCALE)
    assert hand_crops(one_crop, one_crop.to_crop(on_one), SIZE, SCALE, False) == [None, None]
    broken = joints.copy()
    broken[30] = np.nan
    crops = hand_crops(crop, crop.to_crop(broken), SIZE, SCALE, False)
    assert crops[0] is not None and crops[1] is None


def test_min_gain_skips_a_hand_its_own_crop_would_not_enlarge(pair) -> None:
    crop, joints = pair
    gains = [
        own.scale / crop.scale
        for own in hand_crops(crop, crop.to_crop(joints), SIZE, SCALE, False, 0.0)
        if own is not None
    ]
    assert len(gains) == 2 and min(gains) > 1.0
    low, high = sorted(gains)
    crops = hand_crops(crop, crop.to_crop(joints), SIZE, SCALE, False, (low + high) / 2)
    kept = [own is not None for own in crops]
    assert kept == [gains[0] > gains[1], gains[1] > gains[0]]  # only the hand enlarged more
    # A hand spread wider than the pair crop holds it (its crop would shrink it): skipped by
    # the default rule, run without it.
    wide = joints.copy()
    wide[21:] = (wide[21:] - wide[21:].mean(0)) * 4 + wide[21:].mean(0)
    assert hand_crops(crop, crop.to_crop(wide), SIZE, SCALE, False)[1] is None
    assert hand_crops(crop, crop.to_crop(wide), SIZE, SCALE, False, 0.0)[1] is not None


def test_the_nearer_slot_replaces_each_hand_exactly(pair) -> None:
    crop, joints = pair
    rng = np.random.default_rng(0)
    first = np.concatenate([crop.to_crop(joints), rng.uniform(-20, 20, (42, 1))], axis=1)
    first[:, :2] += rng.normal(0, 6, (42, 2))  # the pair pass: loose
    crops = hand_crops(crop, first[:, :2], SIZE, SCALE, False)
    outs, truth = [], joints + rng.normal(0, 0.5, (42, 2))  # the hand pass: close to the truth
    for h, own in enumerate(crops):
        assert own is not None
        out = np.zeros((42, 3))
        near = 1 - h  # the hand sits in the *other* slot of its own crop's output
        out[21 * near : 21 * (near + 1), :2] = own.to_crop(truth[21 * h : 21 * (h + 1)])
        out[21 * near : 21 * (near + 1), 2] = 100.0 + h
        out[21 * h : 21 * (h + 1), :2] = own.to_crop(truth[21 * h : 21 * (h + 1)] + 400.0)
        outs.append(out)
    merged, taken = merge_hand_passes(crop, first, crops, outs)
    assert taken == [1, 0]
    np.testing.assert_allclose(crop.to_image(merged[:, :2]), truth, atol=1e-3)
    np.testing.assert_allclose(merged[:21, 2], 100.0)
    np.testing.assert_allclose(merged[21:, 2], 101.0)
    # A hand not re-run keeps its first-pass joints.
    merged, taken = merge_hand_passes(crop, first, [crops[0], None], [outs[0], None])
    assert taken == [1, None]
    np.testing.assert_allclose(merged[21:], first[21:], atol=1e-3)


def test_two_hands_that_collapse_onto_one_keep_the_first_pass(pair) -> None:
    crop, joints = pair
    first = np.concatenate([crop.to_crop(joints), np.zeros((42, 1))], axis=1)
    crops = hand_crops(crop, first[:, :2], SIZE, SCALE, False)
    outs = []
    for own in crops:  # every hand crop "sees" only the right hand, in both slots
        assert own is not None
        uv = own.to_crop(np.concatenate([joints[:21], joints[:21]]))
        outs.append(np.concatenate([uv, np.zeros((42, 1))], axis=1))
    merged, taken = merge_hand_passes(crop, first, crops, outs)
    assert taken == [None, None]
    np.testing.assert_allclose(merged, first, atol=1e-4)


def test_hand_pass_runs_every_hand_crop_at_once_and_maps_results_back(pair) -> None:
    """hand_pass: one call of ``run`` for all pairs' hand crops, each pair merged from its own
    jobs (a network that sees the true hand in its crop's slot 1 gives the truth back)."""
    crop, joints = pair
    rng = np.random.default_rng(1)
    loose = crop.to_crop(joints) + rng.normal(0, 6, (42, 2))
    one_crop = crop_around(joints[:21], SIZE, SCALE)
    on_one = one_crop.to_crop(np.concatenate([joints[:21], joints[:21]]))
    pairs = [
        (crop, np.column_stack([loose, np.zeros(42)])),
        (one_crop, np.column_stack([on_one, np.zeros(42)])),  # one hand twice: no crops
    ]
    calls: list[list] = []

    def run(jobs):
        calls.append(jobs)
        out = []
        for i, own in jobs:
            assert i == 0
            h = 0 if np.allclose(own.matrix, crops[0].matrix) else 1
            truth = own.to_crop(joints[21 * h : 21 * (h + 1)])
            slots = np.concatenate([truth + 40.0, truth])  # slot 1 is the true hand
            out.append(np.column_stack([slots, np.full(42, 7.0)]))
        return out

    crops = hand_crops(crop, loose, SIZE, SCALE, False)
    results = hand_pass(pairs, run, SIZE, SCALE, False)
    assert len(calls) == 1 and len(calls[0]) == 2
    (merged, taken, index), (kept, none_taken, no_jobs) = results
    np.testing.assert_allclose(crop.to_image(merged[:, :2]), joints, atol=1e-3)
    assert taken == [1, 1] and index == [0, 1]
    np.testing.assert_allclose(merged[:, 2], 7.0)
    np.testing.assert_allclose(kept, pairs[1][1], atol=1e-5)
    assert none_taken == [None, None] and no_jobs == [None, None]
