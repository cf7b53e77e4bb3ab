"""The per-hand pass: each hand of a two-hand crop seen again in a crop of its own.

A crop that holds two hands gives each of them about half the pixels a single hand gets, and the
network's joints there are looser than on single hands (docs/architecture.md, "The per-hand
pass"). After the first pass has found both hands, each hand is re-cropped around its own
first-pass joints (turned upright by its own direction for an upright model), the network runs
on those crops, and of each crop's two hand slots the one nearer to that hand's first-pass
joints replaces them. Presence, side and the relative root depth stay the first pass's: the pair
crop sees both hands, the hand crop may not.

Four guards keep the first pass where a second one would not help: two hands on one place
(:func:`same_place`: the first pass found one hand twice) are not re-run, nor is a hand whose
own crop is (nearly) the pair crop (IoU >= ``SAME_CROP_IOU``: one hand covers the other) or
would not enlarge it (``MIN_GAIN``); and when the two re-run hands end up on one place (their
mean joint distance below ``COLLAPSE_RATIO`` times the first pass's), the first pass is kept for
both.

Both the predictor (``DFLPredictor(hand_pass=True)``, the default) and ``dfl-train evaluate
--hand-pass`` run the pass through :func:`hand_pass` (each gives it its own way to run the
network), so the figures measure what users get.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from dfl_infer.crop import SAME_CROP_IOU, Crop, box_iou, crop_around, upright_rotation
from dfl_infer.joints import NUM_HAND_JOINTS

# Two hands whose mean joint distance is below this share of the hand's size are one hand (the
# predictor's de-duplication of hands found by several crops, and the first guard above).
DUPLICATE_DISTANCE = 0.25
# The per-hand result is refused when the two hands' mean joint distance falls below this share
# of the first pass's (both hand crops' nearer slots on one hand).
COLLAPSE_RATIO = 0.5
# A hand is re-run only when its own crop enlarges it at least this much over the pair crop
# (``benchmarks/hand_pass.py`` measured the trade: docs/architecture.md, "The per-hand pass").
MIN_GAIN = 1.0

_J = NUM_HAND_JOINTS


def _hand(points: np.ndarray, h: int) -> np.ndarray:
    return points[h * _J : (h + 1) * _J]


def same_place(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two hands' (21, 2) joints are one hand: mean joint distance below
    ``DUPLICATE_DISTANCE`` times the extent of ``a``."""
    size = float(np.ptp(a, axis=0).max()) + 1e-6
    return float(np.linalg.norm(a - b, axis=1).mean()) / size < DUPLICATE_DISTANCE


def hand_crops(
    crop: Crop,
    joints_uv: np.ndarray,
    size: int,
    scale: float,
    upright: bool,
    min_gain: float = MIN_GAIN,
) -> list[Crop | None]:
    """The crop of each hand (right, left) of a two-hand result: ``joints_uv`` (42, 2) in
    ``crop``'s pixels; each hand's crop holds its 21 joints as the model's crops hold a hand
    (``size`` pixels, ``scale`` x the joints' extent, upright by the hand's own direction when
    ``upright``). None for a hand whose joints are not finite, whose crop is (nearly) ``crop``
    itself, or whose crop would enlarge it by less than ``min_gain`` (its crop pixels per image
    pixel over ``crop``'s), and for both when the two are one hand (:func:`same_place`)."""
    uv = crop.to_image(np.asarray(joints_uv, dtype=np.float64))
    if same_place(_hand(uv, 0), _hand(uv, 1)):
        return [None, None]
    out: list[Crop | None] = []
    for h in (0, 1):
        pts = _hand(uv, h)
        if not np.isfinite(pts).all() or np.ptp(pts, axis=0).max() <= 0:
            out.append(None)
            continue
        rotation = upright_rotation([pts]) if upright else 0.0
        own = crop_around(pts, size, scale, rotation)
        same = box_iou(np.asarray(own.box), np.asarray(crop.box)) >= SAME_CROP_IOU
        out.append(None if same or own.scale < min_gain * crop.scale else own)
    return out


def merge_hand_passes(
    crop: Crop,
    joints_25d: np.ndarray,
    crops: Sequence[Crop | None],
    hand_joints_25d: Sequence[np.ndarray | None],
) -> tuple[np.ndarray, list[int | None]]:
    """The two-hand result ``joints_25d`` (42, 3: ``crop`` pixels, mm relative to each wrist)
    with each hand h replaced by the slot of ``hand_joints_25d[h]`` (42, 3, in ``crops[h]``'s
    pixels; None: not re-run) nearer to it in the image. Returns (the new (42, 3) array, in
    ``crop``'s pixels; per hand the slot taken, or None where the first pass stays). The first
    pass stays for both hands when the new ones have collapsed onto one place."""
    first = np.asarray(joints_25d, dtype=np.float64)
    uv = crop.to_image(first[:, :2])
    new_uv, new = uv.copy(), first.copy()
    taken: list[int | None] = [None, None]
    for h in (0, 1):
        own, out = crops[h], hand_joints_25d[h]
        if own is None or out is None:
            continue
        cand = own.to_image(np.asarray(out[:, :2], dtype=np.float64))
        dist = [float(np.linalg.norm(_hand(cand, k) - _hand(uv, h), axis=1).mean()) for k in (0, 1)]
        k = int(np.argmin(dist))
        if not np.isfinite(_hand(cand, k)).all():
            continue
        new_uv[h * _J : (h + 1) * _J] = _hand(cand, k)
        new[h * _J : (h + 1) * _J, 2] = out[k * _J : (k + 1) * _J, 2]
        taken[h] = k
    if any(t is not None for t in taken):
        before = np.linalg.norm(_hand(uv, 0) - _hand(uv, 1), axis=1).mean()
        after = np.linalg.norm(_hand(new_uv, 0) - _hand(new_uv, 1), axis=1).mean()
        if after < COLLAPSE_RATIO * before:
            return first.astype(np.float32), [None, None]
    new[:, :2] = crop.to_crop(new_uv)
    return new.astype(np.float32), taken


def hand_pass(
    pairs: Sequence[tuple[Crop, np.ndarray]],
    run: Callable[[list[tuple[int, Crop]]], Sequence[np.ndarray]],
    size: int,
    scale: float,
    upright: bool,
    min_gain: float = MIN_GAIN,
) -> list[tuple[np.ndarray, list[int | None], list[int | None]]]:
    """The pass on two-hand results ``pairs`` (crop, joints_25d (42, 3) in its pixels): the
    hand crops of every pair (:func:`hand_crops`), all given to ``run`` at once as (pair index,
    hand crop) jobs (it returns each job's (42, 3) joints_25d in that crop, in job order), then
    :func:`merge_hand_passes`. Per pair: (its joints_25d after the pass, in its crop's pixels;
    per hand the slot taken or None; per hand its job's index or None where it was not run)."""
    plans = [
        hand_crops(crop, joints[:, :2], size, scale, upright, min_gain) for crop, joints in pairs
    ]
    jobs = [(i, h) for i, crops in enumerate(plans) for h, c in enumerate(crops) if c is not None]
    outs = run([(i, plans[i][h]) for i, h in jobs]) if jobs else []  # type: ignore[misc]
    where = {job: k for k, job in enumerate(jobs)}
    results = []
    for i, ((crop, joints), crops) in enumerate(zip(pairs, plans)):
        index = [where.get((i, h)) for h in (0, 1)]
        hands = [None if k is None else outs[k] for k in index]
        merged, taken = merge_hand_passes(crop, joints, crops, hands)
        results.append((merged, taken, index))
    return results
